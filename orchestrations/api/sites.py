"""Sites: every site, one site with what was checked and what runs there, its rollback readiness, and
the way in for the site's own reporter (reports, authenticated with the site's report token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from orchestrations.api.bodies import read_capped_body
from orchestrations.api.conditional import conditional_json
from orchestrations.api.models import (
    ReportAcceptedModel,
    ReportTokenModel,
    RunningListModel,
    SiteDetailModel,
    SiteListModel,
    SiteRollbackModel,
)
from orchestrations.api.params import (
    CONDITIONAL,
    ITEM_ERRORS,
    READ_ERRORS,
    IfNoneMatch,
    Repository,
    SiteName,
)
from shared.bootstrap import get_services
from shared.domain.acr_events import load_json
from shared.services import rollback, status, workloads

# A report of 2,000 pods with long image names stays well below this.
MAX_REPORT_BYTES = 1024 * 1024
_TEXT = {"type": "string", "minLength": 1}
_TIME = {"type": "string", "format": "date-time"}
# The report's shape (shared.domain.workloads.parse_site_report checks it whole), for the document.
SITE_REPORT_SCHEMA = {
    "type": "object",
    "required": ["schema", "id", "site", "observed_at", "pods"],
    "properties": {
        "schema": {"type": "string", "enum": ["https://acrsync.dev/site-report/v1"]},
        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$"},
        "site": _TEXT,
        "observed_at": _TIME,
        "pods": {
            "type": "array",
            "maxItems": 2000,
            "items": {
                "type": "object",
                "required": ["namespace", "name", "containers"],
                "properties": {
                    "namespace": _TEXT,
                    "name": _TEXT,
                    "controller": {
                        "type": ["object", "null"],
                        "properties": {"kind": _TEXT, "name": _TEXT},
                    },
                    "containers": {
                        "type": "array",
                        "maxItems": 32,
                        "items": {
                            "type": "object",
                            "required": ["name", "image"],
                            "properties": {
                                "name": _TEXT,
                                "image": _TEXT,
                                "image_id": {"type": ["string", "null"]},
                                "waiting_reason": {"type": ["string", "null"]},
                                "message": {"type": ["string", "null"]},
                            },
                        },
                    },
                },
            },
        },
        "registry": {
            "type": ["object", "null"],
            "properties": {
                "tls_expires_at": {"type": ["string", "null"], "format": "date-time"},
                "checks": {
                    "type": ["array", "null"],
                    "maxItems": 64,
                    "items": {
                        "type": "object",
                        "required": ["repository", "digest", "result"],
                        "properties": {
                            "repository": _TEXT,
                            "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                            "result": {"type": "string", "enum": ["ok", "failed"]},
                            "detail": {"type": ["string", "null"]},
                        },
                    },
                },
            },
        },
    },
}

router = APIRouter(prefix="/api")


@router.get(
    "/sites",
    operation_id="listSites",
    tags=["sites"],
    response_model=SiteListModel,
    responses={**CONDITIONAL, **READ_ERRORS},
)
def list_sites(if_none_match: IfNoneMatch = None) -> Response:
    """Every site, ordered by name, with its next sync window (`connection_state` is null here)."""
    return conditional_json({"value": status.list_sites(get_services())}, if_none_match)


@router.get(
    "/running",
    operation_id="listRunning",
    tags=["sites"],
    response_model=RunningListModel,
    responses={**CONDITIONAL, **READ_ERRORS},
)
def list_running(repository: Repository = None, if_none_match: IfNoneMatch = None) -> Response:
    """What runs across the fleet: per site, each digest running there and the release it belongs to
    (`release_id` null: drift), as the sites' last observations say."""
    return conditional_json({"value": workloads.fleet_running(get_services(), repository=repository)}, if_none_match)


@router.get(
    "/sites/{site}",
    operation_id="getSite",
    tags=["sites"],
    response_model=SiteDetailModel,
    responses={**CONDITIONAL, **ITEM_ERRORS},
)
def get_site(site: SiteName, if_none_match: IfNoneMatch = None) -> Response:
    """One site: its connected registry's state from ARM (best effort: Unknown when ARM cannot say)
    and the newest release of each repository checked there."""
    return conditional_json(status.site_detail(get_services(), site), if_none_match)


@router.get(
    "/sites/{site}/rollback",
    operation_id="getSiteRollback",
    tags=["sites"],
    response_model=SiteRollbackModel,
    responses={**CONDITIONAL, **ITEM_ERRORS},
)
def get_site_rollback(
    *,
    site: SiteName,
    repository: Repository = None,
    fresh: Annotated[
        bool, Query(description="Check N-1 at the site's OCI endpoint now instead of trusting the evidence.")
    ] = False,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Rollback readiness per repository: the current release, the previous approved one (N-1) and
    whether it is still at the site (by evidence, or with `fresh` a manifest check at the site)."""
    answers = rollback.site_rollback(get_services(), site, repository=repository, fresh=fresh)
    return conditional_json(rollback.site_rollback_view(site, answers), if_none_match)


@router.post(
    "/sites/{site}/reports",
    operation_id="postSiteReport",
    tags=["sites"],
    status_code=202,
    response_model=ReportAcceptedModel,
    responses=ITEM_ERRORS,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": SITE_REPORT_SCHEMA}}},
    },
)
async def post_site_report(
    site: SiteName, request: Request, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """What an acrsync agent at the site saw: running pods and their image digests, pull errors, the
    local registry's TLS expiry and disconnected-pull checks. Authenticated with the site's report
    token (`Authorization: Bearer ...`), not the API key; idempotent by the report's `id` (a resent
    report answers `duplicate: true` and changes nothing); a bad report is refused whole."""
    services = get_services()
    await run_in_threadpool(workloads.check_report_token, services, site, authorization)
    document = load_json(await read_capped_body(request, MAX_REPORT_BYTES))
    outcome = await run_in_threadpool(workloads.accept_report, services, site, document)
    return JSONResponse(
        {
            "site": outcome.site,
            "duplicate": outcome.duplicate,
            "running": outcome.running,
            "drift": outcome.drift,
            "receipts": outcome.receipts,
            "expected": [
                {"repository": repository, "digest": digest, "release_id": release_id}
                for repository, digest, release_id in outcome.expected
            ],
        },
        status_code=202,
    )


@router.post(
    "/sites/{site}/report-token",
    operation_id="issueSiteReportToken",
    tags=["sites"],
    response_model=ReportTokenModel,
    responses=ITEM_ERRORS,
)
def issue_report_token(site: SiteName) -> Response:
    """The report token of one site, for its agent (`ACRSYNC_REPORT_TOKEN`); operators only. Derived
    from the report secret: the same token each time, until the secret is rotated."""
    token = workloads.issue_report_token(get_services(), site)
    return JSONResponse({"site": site, "token": token}, headers={"Cache-Control": "no-store"})
