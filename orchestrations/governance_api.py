"""Governance routes: a site's scope drift (``GET /api/sites/{site}/drift``).

Mounted by :func:`orchestrations.http_api.create_app` (which adds the unknown-query-parameter check),
with the same conventions as the status API: problem+json errors and a strong ETag with ``If-None-Match``.
This module does not import :mod:`orchestrations.http_api` (that one imports this), hence its own small
ETag helper.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Response
from pydantic import BaseModel, Field

from orchestrations.conditional import conditional_json
from orchestrations.problems import problem_responses
from shared.bootstrap import get_services
from shared.services import governance
from shared.services.lookup import require_site

SITE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

SiteName = Annotated[str, Path(pattern=SITE_PATTERN, max_length=63, description="The site name.")]
IfNoneMatch = Annotated[
    str | None, Header(max_length=2048, description="Answer 304 when the representation still has this ETag.")
]

router = APIRouter(prefix="/api")


class PatternGapModel(BaseModel):
    pattern: str
    overlaps: list[str] = Field(description="Patterns on the other side that cover part of this one.")


class DriftModel(BaseModel):
    site: str
    connected_registry: str | None
    token_id: str | None = Field(description="The sync token whose scope map was compared.")
    status: Literal["ok", "drift", "unknown"] = Field(
        description="ok (no drift), drift, or unknown (no connected registry, sync token or scope map)."
    )
    reason: str | None = Field(description="Why the drift is unknown; null otherwise.")
    approved: list[str] = Field(description="The site's approved repositories (names or globs).")
    granted: list[str] | None = Field(
        description="Repositories the scope map lets the site sync (repositories/<repo>/content/read)."
    )
    over_exposed: list[PatternGapModel] = Field(description="Granted patterns no approved pattern covers.")
    over_exposed_count: int = Field(description="How many granted patterns are over-exposed (ARM has no catalog).")
    missing: list[PatternGapModel] = Field(description="Approved patterns no grant covers: never synced.")
    missing_count: int


@router.get(
    "/sites/{site}/drift",
    operation_id="getSiteDrift",
    tags=["sites"],
    response_model=DriftModel,
    responses={
        304: {"description": "Not modified: If-None-Match matched the ETag."},
        **problem_responses(400, 401, 403, 404, 503),
    },
)
def get_site_drift(site: SiteName, if_none_match: IfNoneMatch = None) -> Response:
    """The site's approved repositories against its sync token's scope map, read from ARM now:
    over-exposed grants (the site receives what nobody approved) and missing ones (it never will)."""
    services = get_services()
    found = require_site(services.store, site)
    return conditional_json(governance.drift_view(governance.site_drift(services, found)), if_none_match)
