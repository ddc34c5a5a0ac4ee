"""acrsync's own events from the local outbox (in Azure they go to an Event Grid topic instead)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from orchestrations.api.conditional import conditional_json
from orchestrations.api.models import EventPageModel
from orchestrations.api.params import CONDITIONAL, ITEM_ERRORS, IfNoneMatch, link
from shared.bootstrap import get_services
from shared.services import status

router = APIRouter(prefix="/api")


@router.get(
    "/events",
    operation_id="listEvents",
    tags=["events"],
    response_model=EventPageModel,
    responses={**CONDITIONAL, **ITEM_ERRORS},
)
def list_events(
    *,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=status.MAX_EVENTS, description="Page size.")] = 100,
    after: Annotated[
        str | None, Query(min_length=1, max_length=512, description="Only events published after this event id.")
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """acrsync's own events from the local outbox, in publication order (404 OUTBOX_NOT_AVAILABLE
    when they go to an Event Grid topic)."""
    page = status.list_events(get_services(), limit=limit, after=after)
    body: dict[str, Any] = {"value": page.value}
    if page.continuation is not None:
        body["nextLink"] = link(request, after=page.continuation)
    return conditional_json(body, if_none_match)
