"""ACR events in: the Event Grid trigger (Azure) and the same handler as a webhook (local runtime).

The webhook lives at the path the Functions host uses, ``/runtime/webhooks/eventgrid?functionName=on_acr_event``,
and answers both handshakes: the Event Grid-schema validation event and the CloudEvents OPTIONS request.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from shared.bootstrap import get_services
from shared.domain.acr_events import MAX_DELIVERY_BYTES, event_from_function_binding
from shared.errors import InvalidInput, UnknownFunction
from shared.services.ingest import ingest_delivery, ingest_trigger_event

FUNCTION_NAME = "on_acr_event"
WEBHOOK_PATHS = ("/runtime/webhooks/eventgrid", "/runtime/webhooks/EventGrid")

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated
router = APIRouter(tags=["ingress"])


@bp.function_name(FUNCTION_NAME)
@bp.event_grid_trigger(arg_name="event")
def on_acr_event(event: func.EventGridEvent) -> None:
    """One event from the registry's system topic; a poison event is logged and dropped, a
    transient failure raises so Event Grid redelivers."""
    ingest_trigger_event(get_services(), _raw_event(event))


def _raw_event(event: Any) -> dict[str, Any]:
    # The worker hands over a CloudEvent when the subscription delivers CloudEvents 1.0.
    if isinstance(event, func.CloudEvent):
        return {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "data": event.get_json(),
        }
    return event_from_function_binding(
        event_id=event.id,
        event_type=event.event_type,
        topic=event.topic,
        subject=event.subject,
        event_time=event.event_time,
        data=event.get_json(),
        data_version=event.data_version,
    )


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
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_DELIVERY_BYTES:
        raise InvalidInput("BATCH_TOO_LARGE", f"the limit is {MAX_DELIVERY_BYTES} bytes")
    body = await request.body()
    report = await run_in_threadpool(ingest_delivery, get_services(), body, request.headers.get("content-type"))
    if report.validation_code is not None:
        return JSONResponse({"validationResponse": report.validation_code})
    return JSONResponse(
        {
            "results": [
                {
                    "event_id": r.event_id,
                    "outcome": r.outcome.value,
                    "release_id": r.release_id,
                    "jobs_sent": r.jobs_sent,
                }
                for r in report.results
            ]
        }
    )


for _path in WEBHOOK_PATHS:
    router.add_api_route(_path, _options, methods=["OPTIONS"], include_in_schema=_path == WEBHOOK_PATHS[0])
    router.add_api_route(_path, _deliver, methods=["POST"], include_in_schema=_path == WEBHOOK_PATHS[0])
