"""Jobs from Service Bus: one message is one check of one release at one site, or one summary of
a release (its session is the release, so summaries of one release run one at a time).

Returning completes the message; raising abandons it and Service Bus redelivers until its
max delivery count, then dead-letters it, where the dead-letter trigger records FAILED.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import get_services
from shared.domain.messages import decode_job
from shared.logs import log_context
from shared.services.jobs import run_job
from shared.services.site_check import record_dead_letter

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated


@bp.function_name("site_sync")
@bp.service_bus_queue_trigger(
    arg_name="msg", connection="ServiceBusConnection", queue_name="%SYNC_QUEUE%", is_sessions_enabled=True
)
def site_sync(msg: func.ServiceBusMessage) -> None:
    # A body that is not a job raises here: redelivery cannot fix it, so it reaches the
    # dead-letter queue with MaxDeliveryCountExceeded, where site_sync_dead_letter drops it.
    job = decode_job(msg.get_body())
    with log_context(message_id=msg.message_id, delivery_count=msg.delivery_count):
        run_job(get_services(), job)


@bp.function_name("site_sync_dead_letter")
@bp.service_bus_queue_trigger(
    arg_name="msg", connection="ServiceBusConnection", queue_name="%SYNC_QUEUE%/$deadletterqueue"
)
def site_sync_dead_letter(msg: func.ServiceBusMessage) -> None:
    with log_context(message_id=msg.message_id):
        record_dead_letter(
            get_services(), msg.get_body(), msg.dead_letter_reason or "", msg.dead_letter_error_description or ""
        )
