"""Events out: publishing what a row change means to subscribers (the events themselves are
:mod:`shared.domain.announcements`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.domain.announcements import events_for_change
from shared.domain.observations import OutboundEvent
from shared.ports import EventSink
from shared.services.rows import RowUpdate


def publish(sink: EventSink, events: Sequence[OutboundEvent]) -> None:
    if events:
        sink.publish(list(events))


def announce(sink: EventSink, update: RowUpdate, now: datetime) -> None:
    """Publish what a row update means to subscribers (nothing when its state did not move)."""
    if update.release is not None and update.state_changed:
        publish(sink, events_for_change(update.before, update.after, update.release, now))
