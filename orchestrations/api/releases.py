"""Releases: the published releases, one release with its sites, its annotations, and the operator's retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from orchestrations.api.bodies import read_capped_body
from orchestrations.api.conditional import conditional_json, tagged_json
from orchestrations.api.models import (
    AnnotationsModel,
    AnnotationsPatchModel,
    ReleaseDetailModel,
    ReleasePageModel,
    RetryModel,
)
from orchestrations.api.params import (
    CONDITIONAL,
    DIGEST_PATTERN,
    ITEM_ERRORS,
    MAX_LIST_PARAMETER,
    MAX_TOKEN_LENGTH,
    READ_ERRORS,
    TAG_PATTERN,
    CallerPrincipal,
    IfNoneMatch,
    ReleaseId,
    Repository,
    absolute,
    link,
)
from shared.bootstrap import get_services
from shared.domain.acr_events import check_plain_json, load_json
from shared.errors import InvalidInput
from shared.services import operations, status
from shared.services.annotations import annotate

router = APIRouter(prefix="/api")
# Every field at its limit, each character escaped (\uXXXX), still fits; a megabyte note does not get read.
MAX_ANNOTATIONS_BODY = 64 * 1024


@router.get(
    "/releases",
    operation_id="listReleases",
    tags=["releases"],
    response_model=ReleasePageModel,
    responses={**CONDITIONAL, **READ_ERRORS},
)
def list_releases(
    *,
    request: Request,
    repository: Repository = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN, max_length=128, description="A tag of the release.")] = None,
    digest: Annotated[str | None, Query(pattern=DIGEST_PATTERN, max_length=200, description="Exact digest.")] = None,
    top: Annotated[int, Query(ge=1, le=status.MAX_PAGE_SIZE, description="Page size.")] = status.DEFAULT_PAGE_SIZE,
    continuation: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_TOKEN_LENGTH, description="Opaque token from a previous nextLink."),
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Published releases, newest push first, filtered by exact repository, tag and digest."""
    page = status.list_releases(
        get_services(), repository=repository, tag=tag, digest=digest, top=top, continuation=continuation
    )
    body: dict[str, Any] = {"value": page.value}
    if page.continuation is not None:
        body["nextLink"] = link(request, continuation=page.continuation)
    return conditional_json(body, if_none_match)


@router.get(
    "/releases/{release_id}",
    operation_id="getRelease",
    tags=["releases"],
    response_model=ReleaseDetailModel,
    responses={**CONDITIONAL, **ITEM_ERRORS},
)
def get_release(release_id: ReleaseId, if_none_match: IfNoneMatch = None) -> Response:
    """The release with one entry per site (ring and critical from the site catalog)."""
    services = get_services()
    tag = status.release_detail_tag(services, release_id)
    return tagged_json(tag, lambda: status.release_detail(services, release_id), if_none_match)


@router.post(
    "/releases/{release_id}/retry",
    operation_id="retrySites",
    tags=["operations"],
    status_code=202,
    response_model=RetryModel,
    responses={
        202: {
            "description": "Checks enqueued; follow the release at Location.",
            "headers": {"Location": {"description": "The release.", "schema": {"type": "string"}}},
        },
        **ITEM_ERRORS,
    },
)
def retry(
    *,
    release_id: ReleaseId,
    request: Request,
    principal: CallerPrincipal,
    sites: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_LIST_PARAMETER,
            description="failed (every FAILED row), stale (every STALE row) or comma-separated site names.",
        ),
    ],
    repeatability_request_id: Annotated[
        str | None,
        Header(
            alias="Repeatability-Request-ID",
            min_length=1,
            max_length=128,
            description="Optional client request id; a repeated retry is harmless either way.",
        ),
    ] = None,
    force: Annotated[
        bool, Query(description="Retry offline sites too (they are skipped with reason SITE_OFFLINE otherwise).")
    ] = False,
) -> Response:
    """Re-enqueue checks: FAILED and STALE rows move to PENDING (reason OPERATOR_RETRY, operator
    evidence); PENDING and WAITING_FOR_WINDOW rows get a fresh check; other rows are skipped."""
    request_spec = operations.RetryRequest.parse(sites)
    result = operations.retry_sites(
        get_services(),
        release_id,
        request_spec,
        actor=principal.name if principal is not None else None,
        request_id=repeatability_request_id,
        force=force,
    )
    body = {
        "release_id": result.release_id,
        "requested": result.requested,
        "enqueued": result.enqueued,
        "skipped": [
            {"site": s.site, "state": s.state.value if s.state else None, "reason": s.reason} for s in result.skipped
        ],
    }
    headers = {"Location": absolute(request, f"/api/releases/{release_id}"), "Cache-Control": "no-store"}
    if repeatability_request_id is not None:
        headers["Repeatability-Result"] = "accepted"
    return JSONResponse(body, status_code=202, headers=headers)


@router.patch(
    "/releases/{release_id}/annotations",
    operation_id="annotateRelease",
    tags=["operations"],
    response_model=AnnotationsModel,
    responses=ITEM_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": AnnotationsPatchModel.model_json_schema()}},
        }
    },
)
async def annotate_release(release_id: ReleaseId, request: Request, principal: CallerPrincipal) -> Response:
    """Record runbook fields on the release (owner, approval_url, change_record, rollback_condition, note):
    the fields given are set (`null` or `""` clears one), the others stay; who and when go into the
    release's annotation history, and the release checkpoint is signed again over them. A bad field
    (unknown, too long, an approval link that is not an absolute http(s) URL) is refused whole."""
    try:
        raw = await read_capped_body(request, MAX_ANNOTATIONS_BODY)
    except InvalidInput as exc:
        raise InvalidInput("ANNOTATION_TOO_LONG", f"the body is at most {MAX_ANNOTATIONS_BODY} bytes") from exc
    body = load_json(raw)
    check_plain_json(body)
    actor = principal.name if principal is not None else None
    recorded = await run_in_threadpool(annotate, get_services(), release_id, body, actor=actor)
    return JSONResponse(status.annotations_view(recorded), headers={"Cache-Control": "no-store"})
