"""Sites: every site, one site with what was checked there, and its rollback readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from orchestrations.api.conditional import conditional_json
from orchestrations.api.models import SiteDetailModel, SiteListModel, SiteRollbackModel
from orchestrations.api.params import CONDITIONAL, ITEM_ERRORS, READ_ERRORS, IfNoneMatch, Repository, SiteName
from shared.bootstrap import get_services
from shared.services import rollback, status

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
