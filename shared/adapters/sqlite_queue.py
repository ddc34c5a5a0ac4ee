"""A durable job queue on one local SQLite file with the Service Bus semantics acrsync relies on.

Peek-lock with a lock duration, delivery counts and dead-lettering after ``max_delivery_count``
deliveries, scheduled delivery, time-to-live with dead-lettering on expiry, duplicate detection on
``message_id`` within a window, and sessions delivered one message at a time in order. Several
queues may share one file (rows carry the queue name), and the file may be shared with the
state store (the tables are prefixed ``queue_``).

Expiry and max-delivery dead-lettering happen lazily, inside the transaction of the next receive,
``count`` or ``peek_dead_letters`` call, so no background thread is needed.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.sqlite_store import SqliteDatabase
from shared.errors import ConfigurationError, EntityTooLarge, QueueRejected, QueueUnavailable
from shared.ports import OutgoingMessage, PropertyValue, ReceivedMessage, SendReport

logger = logging.getLogger(__name__)

# Service Bus Standard tier limit for one message.
MAX_MESSAGE_BYTES = 256 * 1024
# Service Bus limit for message and session ids.
MAX_ID_LENGTH = 128
DEFAULT_BATCH_MESSAGES = 500
TTL_EXPIRED = "TTLExpiredException"
MAX_DELIVERY_EXCEEDED = "MaxDeliveryCountExceeded"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Candidates are scanned in chunks: a session's later messages are skipped in Python once one of
# its messages is taken, so one query with LIMIT max_count might come up short.
_SCAN_CHUNK = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
    queue                   TEXT NOT NULL,
    message_id              TEXT NOT NULL,
    body                    BLOB NOT NULL,
    session_id              TEXT,
    properties              TEXT NOT NULL,
    enqueued_at             INTEGER NOT NULL,
    visible_at              INTEGER NOT NULL,
    expires_at              INTEGER,
    delivery_count          INTEGER NOT NULL DEFAULT 0,
    locked_until            INTEGER,
    lock_token              TEXT,
    dead_letter             INTEGER NOT NULL DEFAULT 0,
    dead_letter_reason      TEXT,
    dead_letter_description TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_order ON queue_messages (queue, dead_letter, seq);
CREATE INDEX IF NOT EXISTS queue_messages_locked ON queue_messages (queue, dead_letter, locked_until);
CREATE INDEX IF NOT EXISTS queue_messages_deliveries ON queue_messages (queue, dead_letter, delivery_count);
CREATE INDEX IF NOT EXISTS queue_messages_expiry ON queue_messages (queue, dead_letter, expires_at);
CREATE INDEX IF NOT EXISTS queue_messages_token ON queue_messages (lock_token) WHERE lock_token IS NOT NULL;
CREATE TABLE IF NOT EXISTS queue_dedupe (
    queue         TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    first_sent_at INTEGER NOT NULL,
    PRIMARY KEY (queue, message_id)
);
CREATE INDEX IF NOT EXISTS queue_dedupe_age ON queue_dedupe (queue, first_sent_at);
"""

# Both read the columns _received() expects, in its order.
_SELECT_ONE = (
    "SELECT seq, message_id, body, session_id, properties, enqueued_at, delivery_count, locked_until, lock_token,"
    " dead_letter_reason, dead_letter_description FROM queue_messages WHERE seq = ?"
)
_SELECT_DEAD_LETTERS = (
    "SELECT seq, message_id, body, session_id, properties, enqueued_at, delivery_count, locked_until, lock_token,"
    " dead_letter_reason, dead_letter_description FROM queue_messages WHERE queue = ? AND dead_letter = 1"
    " ORDER BY seq"
)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _from_micros(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _span(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def _received(row: Sequence[Any]) -> ReceivedMessage:
    properties: dict[str, PropertyValue] = json.loads(row[4])
    return ReceivedMessage(
        message_id=row[1],
        body=bytes(row[2]),
        session_id=row[3],
        properties=properties,
        enqueued_at=_from_micros(row[5]),
        delivery_count=row[6],
        locked_until=_from_micros(row[7]),
        lock_token=row[8] or "",
        dead_letter_reason=row[9],
        dead_letter_description=row[10],
    )


class SqliteJobQueue:
    """:class:`~shared.ports.JobQueue` on one SQLite file; durable across restarts and safe to share
    between threads and processes (each receive locks its messages in one write transaction)."""

    def __init__(
        self,
        path: str | Path,
        *,
        queue_name: str = "site-sync",
        lock_duration: timedelta = timedelta(seconds=60),
        max_delivery_count: int = 10,
        duplicate_detection_window: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] | None = None,
        batch_messages: int = DEFAULT_BATCH_MESSAGES,
        poll_interval: float = 0.05,
        busy_timeout: float = 5.0,
    ) -> None:
        if lock_duration <= timedelta(0):
            raise ConfigurationError("lock_duration must be positive")
        if max_delivery_count < 1:
            raise ConfigurationError("max_delivery_count must be at least 1")
        if batch_messages < 1:
            raise ConfigurationError("batch_messages must be at least 1")
        self._queue = queue_name
        self._lock_duration = _span(lock_duration)
        self._max_delivery_count = max_delivery_count
        self._dedupe_window = _span(duplicate_detection_window)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._batch_messages = batch_messages
        self._poll_interval = poll_interval
        self._db = SqliteDatabase(
            path,
            schema=_SCHEMA,
            what=f"job queue {queue_name}",
            unavailable=QueueUnavailable,
            rejected=QueueRejected,
            busy_timeout=busy_timeout,
        )

    def close(self) -> None:
        self._db.close()

    # -- sending -------------------------------------------------------------------------------
    def send_messages(self, messages: Sequence[OutgoingMessage]) -> SendReport:
        # Validate everything first so a bad message leaves nothing of the send behind.
        for message in messages:
            self._validate(message)
        batches = 0
        dropped = 0
        for start in range(0, len(messages), self._batch_messages):
            batch = messages[start : start + self._batch_messages]
            now = self._now()
            with self._db.write("send messages") as conn:
                if start == 0:
                    conn.execute(
                        "DELETE FROM queue_dedupe WHERE queue = ? AND first_sent_at <= ?",
                        (self._queue, now - self._dedupe_window),
                    )
                dropped += sum(0 if self._insert(conn, message, now) else 1 for message in batch)
            batches += 1
        if dropped:
            logger.debug("dropped %d duplicate messages on %s", dropped, self._queue)
        return SendReport(messages=len(messages), batches=batches)

    def _validate(self, message: OutgoingMessage) -> None:
        if len(message.body) > MAX_MESSAGE_BYTES:
            raise EntityTooLarge(
                f"message {message.message_id[:MAX_ID_LENGTH]!r} is {len(message.body)} bytes;"
                f" the limit is {MAX_MESSAGE_BYTES}"
            )
        if not message.message_id or len(message.message_id) > MAX_ID_LENGTH:
            raise QueueRejected(f"a message id must have 1 to {MAX_ID_LENGTH} characters")
        if message.session_id is not None and not 0 < len(message.session_id) <= MAX_ID_LENGTH:
            raise QueueRejected(f"a session id must have 1 to {MAX_ID_LENGTH} characters")
        if message.time_to_live is not None and message.time_to_live <= timedelta(0):
            raise QueueRejected(f"message {message.message_id!r}: time_to_live must be positive")

    def _insert(self, conn: sqlite3.Connection, message: OutgoingMessage, now: int) -> bool:
        """Insert unless it is a duplicate within the window; runs inside a write transaction."""
        seen = conn.execute(
            "SELECT first_sent_at FROM queue_dedupe WHERE queue = ? AND message_id = ?",
            (self._queue, message.message_id),
        ).fetchone()
        if seen is not None and now - seen[0] < self._dedupe_window:
            return False
        conn.execute(
            "INSERT OR REPLACE INTO queue_dedupe (queue, message_id, first_sent_at) VALUES (?, ?, ?)",
            (self._queue, message.message_id, now),
        )
        scheduled = message.scheduled_at
        if scheduled is not None and scheduled.tzinfo is None:
            scheduled = scheduled.replace(tzinfo=UTC)  # the Clock port speaks UTC, as the Service Bus adapter assumes
        visible_at = max(now, _micros(scheduled)) if scheduled else now
        # As in Service Bus, a scheduled message counts as enqueued when it becomes visible, and
        # its time to live starts then.
        expires_at = visible_at + _span(message.time_to_live) if message.time_to_live else None
        conn.execute(
            "INSERT INTO queue_messages (queue, message_id, body, session_id, properties, enqueued_at, visible_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._queue,
                message.message_id,
                bytes(message.body),
                message.session_id,
                json.dumps(dict(message.properties)),
                visible_at,
                visible_at,
                expires_at,
            ),
        )
        return True

    # -- receiving -----------------------------------------------------------------------------
    def receive_messages(
        self, *, max_count: int = 1, max_wait: float = 0.0, dead_letter: bool = False
    ) -> list[ReceivedMessage]:
        if max_count < 1:
            raise QueueRejected("max_count must be at least 1")
        deadline = time.monotonic() + max(max_wait, 0.0)
        while True:
            received = self._receive_once(max_count, dead_letter)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            time.sleep(min(self._poll_interval, remaining))

    def _receive_once(self, max_count: int, dead_letter: bool) -> list[ReceivedMessage]:
        now = self._now()
        with self._db.write("receive messages") as conn:
            self._sweep(conn, now)
            received = []
            for seq in self._choose(conn, now, max_count, dead_letter):
                token = str(uuid.uuid4())
                conn.execute(
                    "UPDATE queue_messages SET delivery_count = delivery_count + 1, locked_until = ?, lock_token = ?"
                    " WHERE seq = ?",
                    (now + self._lock_duration, token, seq),
                )
                row = conn.execute(_SELECT_ONE, (seq,)).fetchone()
                received.append(_received(row))
        return received

    def _choose(self, conn: sqlite3.Connection, now: int, max_count: int, dead_letter: bool) -> list[int]:
        """Sequence numbers of the messages to lock: visible, unlocked, oldest first, and at most
        one per session (none for a session that already has a message in flight). The
        dead-letter sub-queue ignores sessions, as Service Bus's does."""
        if dead_letter:
            sql = (
                "SELECT seq, NULL FROM queue_messages WHERE queue = :queue AND dead_letter = 1 AND seq > :after"
                " AND (locked_until IS NULL OR locked_until <= :now) ORDER BY seq LIMIT :limit"
            )
        else:
            sql = (
                "SELECT seq, session_id FROM queue_messages WHERE queue = :queue AND dead_letter = 0 AND seq > :after"
                " AND visible_at <= :now AND (locked_until IS NULL OR locked_until <= :now)"
                " AND (session_id IS NULL OR session_id NOT IN (SELECT session_id FROM queue_messages"
                " WHERE queue = :queue AND dead_letter = 0 AND locked_until > :now AND session_id IS NOT NULL))"
                " ORDER BY seq LIMIT :limit"
            )
        params: dict[str, Any] = {"queue": self._queue, "now": now, "after": 0, "limit": _SCAN_CHUNK}
        chosen: list[int] = []
        taken_sessions: set[str] = set()
        while len(chosen) < max_count:
            rows = conn.execute(sql, params).fetchall()
            for seq, session in rows:
                if session is not None:
                    if session in taken_sessions:
                        continue  # FIFO: the session's next message waits for this one
                    taken_sessions.add(session)
                chosen.append(seq)
                if len(chosen) == max_count:
                    break
            if len(rows) < _SCAN_CHUNK:
                break
            params["after"] = rows[-1][0]
        return chosen

    def _sweep(self, conn: sqlite3.Connection, now: int) -> None:
        """Dead-letter unlocked messages that expired or used up their deliveries."""
        expired = conn.execute(
            "UPDATE queue_messages SET dead_letter = 1, dead_letter_reason = ?, dead_letter_description = ?,"
            " expires_at = NULL, locked_until = NULL, lock_token = NULL"
            " WHERE queue = ? AND dead_letter = 0 AND expires_at <= ? AND (locked_until IS NULL OR locked_until <= ?)",
            (TTL_EXPIRED, "the message expired before it was completed", self._queue, now, now),
        ).rowcount
        exhausted = conn.execute(
            "UPDATE queue_messages SET dead_letter = 1, dead_letter_reason = ?, dead_letter_description = ?,"
            " expires_at = NULL, locked_until = NULL, lock_token = NULL"
            " WHERE queue = ? AND dead_letter = 0 AND delivery_count >= ?"
            " AND (locked_until IS NULL OR locked_until <= ?)",
            (
                MAX_DELIVERY_EXCEEDED,
                f"the message could not be completed in {self._max_delivery_count} deliveries",
                self._queue,
                self._max_delivery_count,
                now,
            ),
        ).rowcount
        if expired or exhausted:
            logger.info("dead-lettered %d expired and %d undeliverable messages on %s", expired, exhausted, self._queue)

    # -- settling ------------------------------------------------------------------------------
    def complete_message(self, message: ReceivedMessage) -> None:
        with self._db.write("complete message") as conn:
            seq, _ = self._locked(conn, message)
            conn.execute("DELETE FROM queue_messages WHERE seq = ?", (seq,))

    def abandon_message(self, message: ReceivedMessage) -> None:
        with self._db.write("abandon message") as conn:
            seq, _ = self._locked(conn, message)
            conn.execute("UPDATE queue_messages SET locked_until = NULL, lock_token = NULL WHERE seq = ?", (seq,))

    def dead_letter_message(self, message: ReceivedMessage, *, reason: str, description: str = "") -> None:
        with self._db.write("dead-letter message") as conn:
            seq, in_dead_letter = self._locked(conn, message)
            if in_dead_letter:
                raise QueueRejected(f"message {message.message_id!r} is already in the dead-letter sub-queue")
            conn.execute(
                "UPDATE queue_messages SET dead_letter = 1, dead_letter_reason = ?, dead_letter_description = ?,"
                " expires_at = NULL, locked_until = NULL, lock_token = NULL WHERE seq = ?",
                (reason, description, seq),
            )

    def _locked(self, conn: sqlite3.Connection, message: ReceivedMessage) -> tuple[int, bool]:
        """The message's sequence number and sub-queue, iff ``message`` still holds its lock."""
        found = None
        if message.lock_token:
            found = conn.execute(
                "SELECT seq, dead_letter, locked_until, message_id FROM queue_messages"
                " WHERE queue = ? AND lock_token = ?",
                (self._queue, message.lock_token),
            ).fetchone()
        if found is None or found[2] is None or found[2] <= self._now() or found[3] != message.message_id:
            # Mirrors Service Bus MessageLockLostError: the lock expired, the message was settled
            # or another receiver holds it now.
            raise QueueRejected(f"lock lost for message {message.message_id!r}; it will be delivered again")
        return int(found[0]), bool(found[1])

    # -- introspection (tests, benchmarks, operators) ------------------------------------------
    def count(self, *, dead_letter: bool = False) -> int:
        """Messages in the queue (or its dead-letter sub-queue), scheduled and locked ones included."""
        with self._db.write("count messages") as conn:
            self._sweep(conn, self._now())
            found = conn.execute(
                "SELECT COUNT(*) FROM queue_messages WHERE queue = ? AND dead_letter = ?",
                (self._queue, int(dead_letter)),
            ).fetchone()
        return int(found[0])

    def peek_dead_letters(self) -> list[ReceivedMessage]:
        """Every dead-lettered message, oldest first, without locking any (``lock_token`` is empty)."""
        with self._db.write("peek dead letters") as conn:
            self._sweep(conn, self._now())
            rows = conn.execute(_SELECT_DEAD_LETTERS, (self._queue,)).fetchall()
        return [replace(_received(row), lock_token="", locked_until=None) for row in rows]

    def _now(self) -> int:
        now = self._clock()
        if now.tzinfo is None:
            raise ConfigurationError("the job queue clock must return timezone-aware datetimes")
        return _micros(now)
