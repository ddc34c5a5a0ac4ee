"""The report: how each site fared over a period (``GET /api/report``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from orchestrations.api.conditional import conditional_json
from orchestrations.api.models import ReportModel
from orchestrations.api.params import CONDITIONAL, READ_ERRORS, IfNoneMatch
from shared.bootstrap import get_services
from shared.services import report

router = APIRouter(prefix="/api")


@router.get(
    "/report",
    operation_id="getReport",
    tags=["reports"],
    response_model=ReportModel,
    responses={**CONDITIONAL, **READ_ERRORS},
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
