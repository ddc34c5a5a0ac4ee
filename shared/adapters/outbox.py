"""The local event sink: acrsync's outbound events kept in order in one SQLite file.

Stands in for the Event Grid topic on a laptop, in CI and on a single node; the API lists it. The
file may be shared with the state store and the job queue, so the table is prefixed ``outbox_``.
Publication order is the insertion order (an autoincrement ``seq`` that is never reused), and an
event id is stored once: re-publishing it is a no-op, as subscribers dedupe on ids in Azure.

Errors follow the :class:`~shared.ports.EventSink` contract (the caller treats both sinks alike):
lock contention is :class:`UpstreamUnavailable` (retry), anything else the driver refuses is
:class:`UpstreamRejected`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.sqlite_store import SqliteDatabase
from shared.domain.observations import OutboundEvent, OutboundEventType
from shared.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable

__all__ = ["SqliteOutbox"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type     TEXT NOT NULL,
    source   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    time     TEXT NOT NULL,
    data     JSON NOT NULL
);
"""

_Row = tuple[str, str, str, str, str, str]


class SqliteOutbox:
    """:class:`~shared.ports.Outbox` on one SQLite file; safe to share between threads and between
    processes on one host (SQLite's file locks serialise the writers)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self._db = SqliteDatabase(
            path,
            schema=_SCHEMA,
            what="event outbox",
            unavailable=UpstreamUnavailable,
            rejected=UpstreamRejected,
            busy_timeout=busy_timeout,
        )

    def close(self) -> None:
        self._db.close()

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        """Append the events whose ids are not stored yet, in the given order, in one transaction.

        Raises:
            UpstreamRejected: an event's data is not JSON (nothing was stored).
            UpstreamUnavailable: the file stayed locked by another writer; retry.
        """
        rows = [self._row(event) for event in events]
        if not rows:
            return
        with self._db.write("publish events") as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO outbox_events (event_id, type, source, subject, time, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = conn.total_changes - before
        logger.debug("outbox stored %d of %d published events", added, len(rows))

    def list_events(self, *, limit: int = 100, after: str | None = None) -> list[OutboundEvent]:
        """Up to ``limit`` events in publication order, after the event id ``after`` when given.

        Raises:
            InvalidInput: ``INVALID_LIMIT`` for a limit below 1; ``INVALID_CURSOR`` when ``after``
                is not the id of a stored event.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("INVALID_LIMIT", "limit must be a positive integer")
        with self._db.read("list events") as conn:
            start = 0
            if after is not None:
                found = conn.execute("SELECT seq FROM outbox_events WHERE event_id = ?", (after,)).fetchone()
                if found is None:
                    raise InvalidInput("INVALID_CURSOR", "'after' is not the id of a published event")
                # Rows are never deleted and seq only grows, so the two statements need no shared snapshot.
                start = int(found[0])
            rows = conn.execute(
                "SELECT event_id, type, source, subject, time, data FROM outbox_events WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (start, limit),
            ).fetchall()
        return [self._event(row) for row in rows]

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _row(event: OutboundEvent) -> _Row:
        # A naive time is taken as UTC, as the Event Grid sink does, so both sinks agree.
        time = event.time if event.time.tzinfo is not None else event.time.replace(tzinfo=UTC)
        try:
            # NaN and Infinity are not JSON; Event Grid would refuse them, so the outbox does too.
            data = json.dumps(dict(event.data), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise UpstreamRejected(f"event {event.event_id!r} has data that is not JSON") from exc
        return (event.event_id, event.type.value, event.source, event.subject, time.isoformat(), data)

    @staticmethod
    def _event(row: Any) -> OutboundEvent:
        event_id, type_, source, subject, time, data = row
        try:
            return OutboundEvent(
                event_id=event_id,
                type=OutboundEventType(type_),
                source=source,
                subject=subject,
                time=datetime.fromisoformat(time),
                data=json.loads(data),
            )
        except ValueError as exc:
            # Only another writer (or a removed event type) can leave such a row behind.
            raise UpstreamRejected(f"the outbox holds an unreadable event {event_id!r}") from exc
