"""The dashboard's view models: one request per page refresh, a 304 from stored versions when nothing changed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from orchestrations.api.conditional import tagged_json
from orchestrations.api.models import MatrixModel, ReleasePageViewModel
from orchestrations.api.params import (
    CONDITIONAL,
    ITEM_ERRORS,
    MAX_TOKEN_LENGTH,
    READ_ERRORS,
    IfNoneMatch,
    ReleaseId,
    Repository,
)
from shared.bootstrap import get_services
from shared.domain.gate import MAX_RING_LENGTH
from shared.services import views

router = APIRouter(prefix="/api/views", tags=["views"])


@router.get(
    "/matrix",
    operation_id="getMatrixView",
    response_model=MatrixModel,
    responses={**CONDITIONAL, **READ_ERRORS},
)
def matrix(
    *,
    repository: Repository = None,
    ring: Annotated[
        str | None, Query(min_length=1, max_length=MAX_RING_LENGTH, description="One ring's sites.")
    ] = None,
    top: Annotated[
        int, Query(ge=1, le=views.MAX_MATRIX_RELEASES, description="Releases per page, newest push first.")
    ] = views.DEFAULT_MATRIX_RELEASES,
    continuation: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_TOKEN_LENGTH, description="`page.continuation` of the previous page."),
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The fleet matrix: a page of releases against every site (rings in sites-file order) with a
    roll-up per ring, each site's health as its rows show it, and alerts grouped per site."""
    view = views.matrix(get_services(), repository=repository, ring=ring, top=top, continuation=continuation)
    return tagged_json(view.tag, view.build, if_none_match)


@router.get(
    "/releases/{release_id}",
    operation_id="getReleasePageView",
    response_model=ReleasePageViewModel,
    responses={**CONDITIONAL, **ITEM_ERRORS},
)
def release_page(release_id: ReleaseId, if_none_match: IfNoneMatch = None) -> Response:
    """The release page: the release with its sites, the default gate's answer and the newest evidence."""
    services = get_services()
    known = views.release_page(services, release_id) if if_none_match else None
    if known is not None:
        return tagged_json(known.tag, known.build, if_none_match)
    tag, view = views.build_release_page(services, release_id)
    return tagged_json(tag, lambda: view, if_none_match)
