"""The SQLite job queue behaves like the Service Bus queue acrsync runs on in Azure."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.errors import EntityTooLarge, QueueRejected, QueueUnavailable
from shared.ports import OutgoingMessage
from tests.builders import T0


class FakeClock:
    """Time that only moves when a test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_queue(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., SqliteJobQueue]]:
    """Opens queues on one file (call it again to "restart the process"); closes them all at the end."""
    opened: list[SqliteJobQueue] = []

    def factory(**kw: object) -> SqliteJobQueue:
        kw.setdefault("clock", clock.now)
        queue = SqliteJobQueue(tmp_path / "queue.db", **kw)  # type: ignore[arg-type]
        opened.append(queue)
        return queue

    yield factory
    for queue in opened:
        queue.close()


@pytest.fixture
def queue(open_queue: Callable[..., SqliteJobQueue]) -> SqliteJobQueue:
    return open_queue()


def msg(message_id: str, body: bytes = b"{}", **kw: object) -> OutgoingMessage:
    return OutgoingMessage(message_id=message_id, body=body, **kw)  # type: ignore[arg-type]


def test_messages_arrive_in_order_with_body_and_properties(queue: SqliteJobQueue, clock: FakeClock) -> None:
    queue.send_messages([msg("a", b'{"n":1}', properties={"kind": "FANOUT", "check": 0, "ok": True}), msg("b")])
    received = queue.receive_messages(max_count=10)
    assert [m.message_id for m in received] == ["a", "b"]
    first = received[0]
    assert first.body == b'{"n":1}'
    assert first.properties == {"kind": "FANOUT", "check": 0, "ok": True}
    assert first.delivery_count == 1 and first.lock_token
    assert first.enqueued_at == clock.now() and first.locked_until == clock.now() + timedelta(seconds=60)
    for m in received:
        queue.complete_message(m)
    assert queue.receive_messages() == [] and queue.count() == 0


def test_scheduled_message_is_invisible_until_its_time(queue: SqliteJobQueue, clock: FakeClock) -> None:
    queue.send_messages([msg("later", scheduled_at=clock.now() + timedelta(hours=2))])
    assert queue.receive_messages(max_count=5) == []
    clock.advance(2 * 3600 - 1)
    assert queue.receive_messages() == []
    clock.advance(1)
    assert [m.message_id for m in queue.receive_messages()] == ["later"]


def test_expired_lock_redelivers_with_a_higher_delivery_count(queue: SqliteJobQueue, clock: FakeClock) -> None:
    queue.send_messages([msg("job")])
    first = queue.receive_messages()[0]
    clock.advance(30)
    assert queue.receive_messages() == []  # still locked
    clock.advance(31)
    again = queue.receive_messages()
    assert [m.delivery_count for m in again] == [2]
    assert again[0].lock_token != first.lock_token


def test_abandoned_message_is_delivered_again_at_once(queue: SqliteJobQueue) -> None:
    queue.send_messages([msg("job")])
    queue.abandon_message(queue.receive_messages()[0])
    assert [m.delivery_count for m in queue.receive_messages()] == [2]


def test_max_delivery_count_dead_letters_the_message(open_queue: Callable[..., SqliteJobQueue]) -> None:
    queue = open_queue(max_delivery_count=3)
    queue.send_messages([msg("poison")])
    for attempt in (1, 2, 3):
        (received,) = queue.receive_messages()
        assert received.delivery_count == attempt
        queue.abandon_message(received)
    assert queue.receive_messages() == []
    (dead,) = queue.peek_dead_letters()
    assert dead.message_id == "poison" and dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert queue.count() == 0 and queue.count(dead_letter=True) == 1


def test_duplicate_id_is_dropped_within_the_window_and_accepted_after(
    open_queue: Callable[..., SqliteJobQueue], clock: FakeClock
) -> None:
    queue = open_queue(duplicate_detection_window=timedelta(minutes=10))
    report = queue.send_messages([msg("r1:plant-01"), msg("r1:plant-01")])
    assert report.messages == 2  # both accepted, one dropped
    queue.complete_message(queue.receive_messages()[0])
    clock.advance(9 * 60)
    queue.send_messages([msg("r1:plant-01")])
    assert queue.count() == 0  # dropped: the window counts from the first send
    clock.advance(61)
    queue.send_messages([msg("r1:plant-01")])
    assert queue.count() == 1


def test_reopening_the_file_keeps_messages_locks_and_dedupe_history(
    open_queue: Callable[..., SqliteJobQueue], clock: FakeClock
) -> None:
    before = open_queue()
    before.send_messages(
        [msg("locked"), msg("waiting"), msg("scheduled", scheduled_at=clock.now() + timedelta(hours=1))]
    )
    held = before.receive_messages()[0]
    before.close()

    after = open_queue()
    after.send_messages([msg("waiting")])  # a re-send after the restart is still a duplicate
    assert after.count() == 3
    (waiting,) = after.receive_messages(max_count=10)
    assert waiting.message_id == "waiting"
    after.complete_message(waiting)
    after.complete_message(held)  # the lock taken before the restart is still valid
    clock.advance(3600)
    assert [m.message_id for m in after.receive_messages(max_count=10)] == ["scheduled"]


def test_sessions_deliver_one_message_at_a_time_while_others_proceed(queue: SqliteJobQueue) -> None:
    queue.send_messages(
        [
            msg("a1", session_id="plant-01"),
            msg("a2", session_id="plant-01"),
            msg("b1", session_id="plant-02"),
            msg("free"),
        ]
    )
    first = queue.receive_messages(max_count=10)
    assert [m.message_id for m in first] == ["a1", "b1", "free"]
    assert queue.receive_messages(max_count=10) == []  # a2 waits for a1
    queue.complete_message(first[0])
    assert [m.message_id for m in queue.receive_messages(max_count=10)] == ["a2"]


def test_abandoned_session_message_keeps_its_place(queue: SqliteJobQueue) -> None:
    queue.send_messages([msg("a1", session_id="plant-01"), msg("a2", session_id="plant-01")])
    queue.abandon_message(queue.receive_messages()[0])
    assert [m.message_id for m in queue.receive_messages(max_count=10)] == ["a1"]


def test_settling_with_a_stale_lock_fails_with_lock_lost(queue: SqliteJobQueue, clock: FakeClock) -> None:
    queue.send_messages([msg("job")])
    stale = queue.receive_messages()[0]
    clock.advance(61)
    with pytest.raises(QueueRejected, match="lock lost"):
        queue.complete_message(stale)  # expired, nobody else has it yet
    fresh = queue.receive_messages()[0]
    for settle in (queue.complete_message, queue.abandon_message):
        with pytest.raises(QueueRejected, match="lock lost"):
            settle(stale)
    with pytest.raises(QueueRejected, match="lock lost"):
        queue.dead_letter_message(stale, reason="x")
    queue.complete_message(fresh)
    with pytest.raises(QueueRejected, match="lock lost"):
        queue.complete_message(fresh)  # already settled
    assert queue.count() == 0


def test_dead_letter_keeps_reason_and_description(queue: SqliteJobQueue) -> None:
    queue.send_messages([msg("bad", b"not json", properties={"kind": "FANOUT"})])
    queue.dead_letter_message(queue.receive_messages()[0], reason="MALFORMED_JSON", description="line 1: ...")
    assert queue.receive_messages() == []
    (dead,) = queue.receive_messages(dead_letter=True)
    assert (dead.message_id, dead.body, dead.properties) == ("bad", b"not json", {"kind": "FANOUT"})
    assert (dead.dead_letter_reason, dead.dead_letter_description) == ("MALFORMED_JSON", "line 1: ...")
    queue.complete_message(dead)
    assert queue.count(dead_letter=True) == 0


def test_expired_message_is_dead_lettered(queue: SqliteJobQueue, clock: FakeClock) -> None:
    queue.send_messages([msg("short", time_to_live=timedelta(minutes=5)), msg("long")])
    clock.advance(5 * 60)
    assert [m.message_id for m in queue.receive_messages(max_count=10)] == ["long"]
    (dead,) = queue.peek_dead_letters()
    assert dead.message_id == "short" and dead.dead_letter_reason == "TTLExpiredException"
    assert dead.lock_token == ""


def test_scheduled_message_lives_its_ttl_after_it_becomes_visible(queue: SqliteJobQueue, clock: FakeClock) -> None:
    queue.send_messages([msg("later", scheduled_at=clock.now() + timedelta(hours=3), time_to_live=timedelta(hours=1))])
    clock.advance(3 * 3600 + 59 * 60)
    assert [m.message_id for m in queue.receive_messages()] == ["later"]


def test_oversize_message_is_refused_and_nothing_is_stored(queue: SqliteJobQueue) -> None:
    with pytest.raises(EntityTooLarge, match="limit"):
        queue.send_messages([msg("ok"), msg("huge", b"x" * (256 * 1024 + 1))])
    assert queue.count() == 0
    queue.send_messages([msg("huge", b"x" * (256 * 1024))])  # exactly at the limit, and not a duplicate
    assert queue.count() == 1


def test_a_thousand_messages_go_in_batches(queue: SqliteJobQueue) -> None:
    report = queue.send_messages([msg(f"m{i:04d}") for i in range(1000)])
    assert (report.messages, report.batches) == (1000, 2)
    assert queue.count() == 1000
    assert queue.send_messages([]).batches == 0


def test_queues_sharing_a_file_stay_apart(open_queue: Callable[..., SqliteJobQueue]) -> None:
    sync, other = open_queue(), open_queue(queue_name="other")
    sync.send_messages([msg("same-id")])
    other.send_messages([msg("same-id")])  # duplicate detection is per queue
    assert sync.count() == 1 and other.count() == 1
    with pytest.raises(QueueRejected, match="lock lost"):
        other.complete_message(sync.receive_messages()[0])


def test_concurrent_receivers_never_share_a_message(queue: SqliteJobQueue) -> None:
    queue.send_messages([msg(f"m{i:03d}") for i in range(200)])
    got: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        while batch := queue.receive_messages(max_count=7):
            for m in batch:
                queue.complete_message(m)
            with lock:
                got.extend(m.message_id for m in batch)

    threads = [threading.Thread(target=drain) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [f"m{i:03d}" for i in range(200)]


_REPO_ROOT = Path(__file__).resolve().parents[2]
_DRAIN_SCRIPT = """
import sys
from shared.adapters.sqlite_queue import SqliteJobQueue
queue = SqliteJobQueue(sys.argv[1])
while batch := queue.receive_messages(max_count=5):
    for m in batch:
        queue.complete_message(m)
        print(m.message_id)
queue.close()
"""


def test_processes_sharing_the_file_never_share_a_message(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteJobQueue(path)
    try:
        queue.send_messages([msg(f"m{i:03d}") for i in range(300)])
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _DRAIN_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True, cwd=_REPO_ROOT
            )
            for _ in range(3)
        ]
        outputs = [w.communicate(timeout=60)[0].split() for w in workers]
        assert all(w.returncode == 0 for w in workers)
        assert sorted(i for out in outputs for i in out) == [f"m{i:03d}" for i in range(300)]
        assert queue.count() == 0
    finally:
        queue.close()


def test_a_file_locked_by_another_writer_is_reported_as_unavailable(
    open_queue: Callable[..., SqliteJobQueue], tmp_path: Path
) -> None:
    queue = open_queue(busy_timeout=0.1)
    other = sqlite3.connect(tmp_path / "queue.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(QueueUnavailable, match="busy") as info:
            queue.send_messages([msg("job")])
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
    finally:
        other.close()
    queue.send_messages([msg("job")])  # the caller's retry goes through once the lock is gone
    assert queue.count() == 1


def test_receive_waits_up_to_max_wait(open_queue: Callable[..., SqliteJobQueue]) -> None:
    queue = open_queue(clock=None)
    started = time.monotonic()
    assert queue.receive_messages(max_wait=0.2) == []
    assert 0.2 <= time.monotonic() - started < 2

    sender = threading.Timer(0.1, lambda: queue.send_messages([msg("late")]))
    sender.start()
    try:
        started = time.monotonic()
        assert [m.message_id for m in queue.receive_messages(max_wait=5)] == ["late"]
        assert time.monotonic() - started < 4
    finally:
        sender.join()
