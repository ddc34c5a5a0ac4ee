"""Event ingress over HTTP: the Event Grid webhook (the local runtime's way in; ``acrsync push`` posts here).

The webhook lives at the path the Functions host uses, ``/runtime/webhooks/eventgrid?functionName=on_acr_event``,
and answers both handshakes: the Event Grid-schema validation event and the CloudEvents OPTIONS request. In
Azure the host itself owns that path and hands events to the trigger in :mod:`orchestrations.acr_events`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from orchestrations.acr_events import FUNCTION_NAME
from orchestrations.api.bodies import read_capped_body
from shared.bootstrap import get_services
from shared.domain.acr_events import MAX_DELIVERY_BYTES
from shared.errors import InvalidInput, UnknownFunction
from shared.services.ingest import IngestResult, ingest_delivery

WEBHOOK_PATHS = ("/runtime/webhooks/eventgrid", "/runtime/webhooks/EventGrid")

router = APIRouter(tags=["ingress"])


def _options(origin: str | None = Header(None, alias="WebHook-Request-Origin")) -> Response:
    """CloudEvents abuse-protection handshake: allow the origin that asked."""
    if not origin:
        raise InvalidInput("MISSING_ORIGIN", "the handshake needs WebHook-Request-Origin")
    return Response(
        status_code=200,
        headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"},
    )


async def _deliver(request: Request, function_name: str = Query(FUNCTION_NAME, alias="functionName")) -> Response:
    """Event Grid-schema arrays or CloudEvents (single or batch) from Event Grid or `acrsync push`."""
    if function_name != FUNCTION_NAME:
        raise UnknownFunction(function_name)
    body = await read_capped_body(request, MAX_DELIVERY_BYTES)
    report = await run_in_threadpool(ingest_delivery, get_services(), body, request.headers.get("content-type"))
    if report.validation_code is None:
        answer: dict[str, Any] = {"results": results_view(report.results)}
    else:  # the handshake answer Event Grid reads, with what the other events of the batch did
        answer = {"validationResponse": report.validation_code}
        if report.results:
            answer["results"] = results_view(report.results)
    # 200 once any event was taken: Event Grid dead-letters a delivery answered 400 as a whole, which
    # would lose the good events with the bad; the bad ones are reported per event instead.
    return JSONResponse(answer)


def results_view(results: Sequence[IngestResult]) -> list[dict[str, Any]]:
    """What each event of a delivery did, as the webhook (and the dev registry bridge) answer it."""
    return [
        {"event_id": r.event_id, "outcome": r.outcome.value, "release_id": r.release_id, "jobs_sent": r.jobs_sent}
        | ({"code": r.code, "detail": r.detail} if r.code else {})
        for r in results
    ]


for _path in WEBHOOK_PATHS:
    documented = _path == WEBHOOK_PATHS[0]
    router.add_api_route(
        _path, _options, methods=["OPTIONS"], include_in_schema=documented, operation_id="eventGridHandshake"
    )
    router.add_api_route(_path, _deliver, methods=["POST"], include_in_schema=documented, operation_id="deliverEvents")
