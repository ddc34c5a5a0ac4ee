"""The readiness gate: may a pipeline roll a release out now (200 ready or failed, 202 pending)?"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from orchestrations.api.conditional import conditional_json, etag_matches, not_modified, tagged_json
from orchestrations.api.models import ReadinessModel
from orchestrations.api.params import CONDITIONAL, ITEM_ERRORS, MAX_LIST_PARAMETER, IfNoneMatch, ReleaseId, link
from shared.bootstrap import get_services
from shared.domain.gate import MAX_RING_LENGTH, GatePolicy, GateSelection, GateState, parse_site_list
from shared.services import status

router = APIRouter(prefix="/api")


@router.get(
    "/releases/{release_id}/readiness",
    operation_id="getReadiness",
    tags=["releases"],
    response_model=ReadinessModel,
    responses={
        202: {
            "model": ReadinessModel,
            "description": "Pending: poll Location again after Retry-After seconds.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds until the earliest predicted change among pending sites (10 to 3600).",
                    "schema": {"type": "integer", "minimum": 10, "maximum": 3600},
                },
                "Location": {"description": "This gate's URL, to poll.", "schema": {"type": "string"}},
            },
        },
        **CONDITIONAL,
        **ITEM_ERRORS,
    },
)
def get_readiness(
    *,
    release_id: ReleaseId,
    request: Request,
    sites: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_LIST_PARAMETER,
            description="Comma-separated site names (a pick the release does not go to counts as blocked).",
        ),
    ] = None,
    ring: Annotated[
        str | None, Query(min_length=1, max_length=MAX_RING_LENGTH, description="Every in-scope site of a ring.")
    ] = None,
    min_ready: Annotated[
        float,
        Query(gt=0, le=1, allow_inf_nan=False, description="Fraction of selected sites that must be ready."),
    ] = 1.0,
    require_all_critical: Annotated[bool, Query(description="Every selected critical site must be ready too.")] = True,
    require_rollback: Annotated[
        bool, Query(description="Fail (ROLLBACK_NOT_READY) unless every selected site could roll back to N-1.")
    ] = False,
    require_running: Annotated[
        bool,
        Query(description="A site is ready once it is seen running the digest, not when its registry holds it."),
    ] = False,
    require_approval: Annotated[
        bool, Query(description="Fail (APPROVAL_MISSING) until the release's annotations carry an approval_url.")
    ] = False,
    stale: Annotated[
        Literal["blocked", "pending"],
        Query(description="STALE sites block (default), or count as pending: they are still checked and may arrive."),
    ] = "blocked",
    include_rollback: Annotated[
        bool,
        Query(
            alias="rollback",
            description="Include each selected site's rollback check (built on request: it reads older releases; "
            "implied by require_rollback). Without it `rollback` and `rollback_ready` are null.",
        ),
    ] = False,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The readiness gate: 200 `ready`, 202 `pending` (Retry-After, Location) or 200 `failed`.

    Selection: `sites` or `ring` (not both), else every in-scope site. Blocked sites are STALE,
    FAILED, WITHDRAWN, or explicit picks the release does not go to. `failed` once the policy can
    no longer be met (too many blocked, a critical site blocked, the release withdrawn, nothing selected).
    """
    selection = GateSelection(sites=parse_site_list(sites) if sites is not None else None, ring=ring)
    policy = GatePolicy(
        min_ready=min_ready,
        require_all_critical=require_all_critical,
        require_rollback=require_rollback,
        require_running=require_running,
        stale_blocks=stale == "blocked",
        require_approval=require_approval,
    )
    services = get_services()
    if if_none_match and not include_rollback:
        known = status.readiness_revalidation(services, release_id, selection, policy)
        if known is not None and etag_matches(if_none_match, f'"{known[0]}"'):
            return not_modified(f'"{known[0]}"', _poll_headers(known[1], request))
    answer = status.readiness(services, release_id, selection, policy, include_rollback=include_rollback)
    verdict = answer.verdict
    pending = verdict.state is GateState.PENDING
    headers = _poll_headers(verdict.retry_after, request) if pending else None
    status_code = 202 if pending else 200
    if answer.tag is None:
        return conditional_json(answer.view, if_none_match, status_code=status_code, headers=headers)
    return tagged_json(answer.tag, lambda: answer.view, if_none_match, status_code=status_code, headers=headers)


def _poll_headers(retry_after: int | None, request: Request) -> dict[str, str] | None:
    if retry_after is None:
        return None  # a final answer: nothing to poll
    return {"Retry-After": str(retry_after), "Location": link(request)}
