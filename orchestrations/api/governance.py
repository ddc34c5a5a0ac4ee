"""Governance: a site's scope drift (``GET /api/sites/{site}/drift``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from orchestrations.api.conditional import conditional_json
from orchestrations.api.models import DriftModel
from orchestrations.api.params import CONDITIONAL, ITEM_ERRORS, IfNoneMatch, SiteName
from shared.bootstrap import get_services
from shared.services import governance
from shared.services.lookup import require_site

router = APIRouter(prefix="/api")


@router.get(
    "/sites/{site}/drift",
    operation_id="getSiteDrift",
    tags=["sites"],
    response_model=DriftModel,
    responses={**CONDITIONAL, **ITEM_ERRORS},
)
def get_site_drift(site: SiteName, if_none_match: IfNoneMatch = None) -> Response:
    """The site's approved repositories against its sync token's scope map, read from ARM now:
    over-exposed grants (the site receives what nobody approved) and missing ones (it never will)."""
    services = get_services()
    found = require_site(services.store, site)
    return conditional_json(governance.drift_view(governance.site_drift(services, found)), if_none_match)
