"""ACR events in: the Event Grid trigger (Azure). Locally the same service answers the webhook at the
host's path (:mod:`orchestrations.api.ingress`)."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared.bootstrap import get_services
from shared.domain.acr_events import event_from_function_binding
from shared.services.ingest import ingest_event

FUNCTION_NAME = "on_acr_event"

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated


@bp.function_name(FUNCTION_NAME)
@bp.event_grid_trigger(arg_name="event")
def on_acr_event(event: func.EventGridEvent) -> None:
    """One event from the registry's system topic; a poison event is logged and dropped, a
    transient failure raises so Event Grid redelivers."""
    ingest_event(get_services(), _raw_event(event))


def _raw_event(event: Any) -> dict[str, Any]:
    # azure-functions 1.25 and later hand a CloudEvents 1.0 delivery over as func.CloudEvent. The Python
    # 3.11 worker loads its own azure-functions 1.24, which has no such class, so the object is told apart
    # by what it carries, never by a class this library may not have.
    if getattr(event, "specversion", None):
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
