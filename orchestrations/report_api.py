"""Routes for rollback readiness and reporting: ``GET /api/sites/{site}/rollback`` and ``GET /api/report``.

Included by :func:`orchestrations.http_api.create_app`, which adds its query-parameter check to these
routes, so they follow the API's conventions (problem+json, unknown query parameters refused, strong
ETag with If-None-Match). This module does not import :mod:`orchestrations.http_api` (that one
imports this), hence its own small ETag helper.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, Field

from orchestrations.conditional import conditional_json
from orchestrations.problems import problem_responses
from shared.bootstrap import get_services
from shared.services import report, rollback

router = APIRouter(prefix="/api")

_CONDITIONAL: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified: If-None-Match matched the ETag."}}
IfNoneMatch = Annotated[
    str | None, Header(max_length=2048, description="Answer 304 when the representation still has this ETag.")
]


# -- representations ----------------------------------------------------------------------------


class CurrentReleaseModel(BaseModel):
    release_id: str
    digest: str
    tags: list[str]
    state: str | None = Field(description="The site's row for it; null when the site has no row yet.")


class PreviousReleaseModel(BaseModel):
    release_id: str
    digest: str
    tags: list[str]
    state: str = Field(description="SYNCED or VERIFIED: N-1 reached the site.")
    withdrawn_at: datetime | None = Field(description="Set only with reason PREVIOUS_WITHDRAWN.")
    present: bool | None = Field(description="Still at the site; null when a fresh check could not tell.")
    evidence_source: str | None = Field(description="What says so: the latest evidence's source, or oci-probe.")
    observed_at: datetime | None
    probe_error: str | None = Field(description="unreachable or refused when a fresh check failed.")


class RepositoryRollbackModel(BaseModel):
    repository: str
    current: CurrentReleaseModel | None = Field(
        description="The newest release of the repository the site admits that is not withdrawn."
    )
    previous: PreviousReleaseModel | None = Field(
        description="N-1: the newest older release the site admits that is not withdrawn and reached the site."
    )
    rollback_ready: bool
    reason: str = Field(
        description="PREVIOUS_PRESENT, NO_CURRENT_RELEASE, NO_PREVIOUS_RELEASE, PREVIOUS_WITHDRAWN, "
        "PREVIOUS_NOT_PRESENT or PREVIOUS_PRESENCE_UNKNOWN."
    )


class SiteRollbackModel(BaseModel):
    site: str
    value: list[RepositoryRollbackModel]


class ExposureModel(BaseModel):
    repositories_approved: int = Field(description="The site's approved repository patterns.")
    drift: bool | None = Field(description="Its sync scope differs from its approvals; null when unknown.")
    over_exposed: int | None = Field(description="Scope-map patterns no approval covers; null when unknown.")
    missing: int | None = Field(description="Approvals no scope-map pattern covers; null when unknown.")


class SiteReportModel(BaseModel):
    site: str
    ring: str
    critical: bool
    releases_received: int = Field(description="Rows in scope of releases pushed in the period.")
    releases_ready: int = Field(description="Of those, rows SYNCED or VERIFIED now.")
    lag_median_seconds: float | None = Field(description="Push to SYNCED/VERIFIED; null when none arrived.")
    lag_p95_seconds: float | None
    windows_missed: int = Field(description="Rows that went STALE with reason WINDOW_MISSED.")
    stale_incidents: int = Field(description="Evidence records moving a row to STALE.")
    exposure: ExposureModel


class ReportModel(BaseModel):
    since: datetime
    until: datetime
    value: list[SiteReportModel]


# -- routes -------------------------------------------------------------------------------------


@router.get(
    "/sites/{site}/rollback",
    operation_id="getSiteRollback",
    tags=["sites"],
    response_model=SiteRollbackModel,
    responses={**_CONDITIONAL, **problem_responses(400, 401, 403, 404, 503)},
)
def get_site_rollback(
    *,
    site: Annotated[str, Path(max_length=63, description="The site name.")],
    repository: Annotated[str | None, Query(max_length=255, description="Only this repository.")] = None,
    fresh: Annotated[
        bool, Query(description="Check N-1 at the site's OCI endpoint now instead of trusting the evidence.")
    ] = False,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Rollback readiness per repository: the current release, the previous approved one (N-1) and
    whether it is still at the site (by evidence, or with `fresh` a manifest check at the site)."""
    answers = rollback.site_rollback(get_services(), site, repository=repository, fresh=fresh)
    return conditional_json(rollback.site_rollback_view(site, answers), if_none_match)


@router.get(
    "/report",
    operation_id="getReport",
    tags=["reports"],
    response_model=ReportModel,
    responses={**_CONDITIONAL, **problem_responses(400, 401, 403, 503)},
)
def get_report(
    *,
    since: Annotated[
        str, Query(max_length=16, description="The period: a number of days or hours back, e.g. 30d or 12h.")
    ] = report.DEFAULT_SINCE,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Per site over the period: releases received and ready, median and p95 lag from push to
    SYNCED/VERIFIED, windows missed, stale incidents and exposure."""
    return conditional_json(report.site_report(get_services(), since), if_none_match)
