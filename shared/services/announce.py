"""Events out: publishing what a row change means to subscribers (the events themselves are
:mod:`shared.domain.announcements`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from shared.domain.announcements import announces, events_for_change
from shared.domain.model import Release
from shared.domain.observations import OutboundEvent
from shared.ports import EventSink
from shared.services.rows import RowUpdate


def publish(sink: EventSink, events: Sequence[OutboundEvent]) -> None:
    if events:
        sink.publish(list(events))


def announce(sink: EventSink, update: RowUpdate, release: Callable[[], Release], now: datetime) -> None:
    """Publish what a row update means for its site (nothing when its state did not move).

    ``release`` is asked for the header only when there is something to announce."""
    if update.state_changed and announces(update.before, update.after):
        publish(sink, events_for_change(update.before, update.after, release(), now))
