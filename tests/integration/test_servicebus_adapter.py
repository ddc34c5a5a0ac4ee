"""ServiceBusJobQueue at its narrowest seam: what it hands the azure-servicebus client.

There is no Service Bus emulator here, so a recording fake client stands in for the connection while
everything size-related stays real: the fake sender's batches are real ``ServiceBusMessageBatch``
objects, which encode each message with the SDK's AMQP encoder and refuse it past the limit exactly
as a batch made by a live sender does. Received messages are real ``ServiceBusReceivedMessage``
objects built from AMQP sections.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
    SessionLockLostError,
)

from shared.adapters.servicebus import ServiceBusJobQueue
from shared.domain.messages import JobKind, SiteSyncJob
from shared.errors import ConfigurationError, EntityTooLarge, InvalidInput, QueueRejected, QueueUnavailable
from shared.ports import OutgoingMessage, SendReport
from tests.builders import T0, make_release

STANDARD = 256 * 1024  # MAX_BATCH_SIZE_STANDARD: what a Standard namespace's link reports
PREMIUM = 1024 * 1024  # MAX_BATCH_SIZE_PREMIUM
QUEUE = "site-sync"


# -- fakes at the SDK seam -----------------------------------------------------------------------
class RecordingBatch(ServiceBusMessageBatch):
    """The real batch (real encoding, real size limit) that also remembers what was added."""

    def __init__(self, max_size_in_bytes: int) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message: Any) -> None:
        super().add_message(message)  # raises MessageSizeExceededError before we record
        self.added.append(message)


class FakeSender:
    """Mirrors ServiceBusSender.create_message_batch/send_messages without a link."""

    def __init__(self, link_max_bytes: int) -> None:
        self.link_max_bytes = link_max_bytes
        self.sent: list[RecordingBatch] = []
        self.fail_with: BaseException | None = None
        self.thread = threading.get_ident()

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> RecordingBatch:
        if max_size_in_bytes and max_size_in_bytes > self.link_max_bytes:  # as the SDK does
            raise ValueError(f"Max message size: {max_size_in_bytes} is too large")
        return RecordingBatch(max_size_in_bytes or self.link_max_bytes)

    def send_messages(self, batch: RecordingBatch) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        assert isinstance(batch, ServiceBusMessageBatch), "the adapter must send batches, not lists"
        self.sent.append(batch)


class FakeSession:
    def __init__(self, session_id: str, locked_until: datetime) -> None:
        self.session_id = session_id
        self.locked_until_utc = locked_until


class FakeReceiver:
    """Hands out queued ServiceBusReceivedMessages and records settlements."""

    def __init__(self, kwargs: dict[str, Any], inbox: list[Any]) -> None:
        self.kwargs = kwargs
        self.inbox = inbox  # shared with the client: ServiceBusReceivedMessage factories or exceptions
        self.session: FakeSession | None = None
        self.closed = False
        self.settled: list[tuple[str, Any, dict[str, Any]]] = []
        self.settle_error: BaseException | None = None

    def receive_messages(self, max_message_count: int = 1, max_wait_time: float | None = None) -> list[Any]:
        self.receive_args = (max_message_count, max_wait_time)
        out: list[Any] = []
        while self.inbox and len(out) < max_message_count:
            item = self.inbox.pop(0)
            if isinstance(item, BaseException):
                raise item
            message = item(self)
            if self.kwargs.get("session_id") is NEXT_AVAILABLE_SESSION:
                self.session = FakeSession(message.session_id, T0 + timedelta(minutes=5))
            out.append(message)
        return out

    def _settle(self, kind: str, message: Any, **kwargs: Any) -> None:
        if self.settle_error is not None:
            raise self.settle_error
        self.settled.append((kind, message, kwargs))

    def complete_message(self, message: Any) -> None:
        self._settle("complete", message)

    def abandon_message(self, message: Any) -> None:
        self._settle("abandon", message)

    def dead_letter_message(self, message: Any, **kwargs: Any) -> None:
        self._settle("dead_letter", message, **kwargs)

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, link_max_bytes: int) -> None:
        self.link_max_bytes = link_max_bytes
        self.thread = threading.get_ident()
        self.senders: list[FakeSender] = []
        self.receivers: list[FakeReceiver] = []
        self.inbox: list[Any] = []
        self.closed = False

    def get_queue_sender(self, queue_name: str) -> FakeSender:
        assert queue_name == QUEUE
        sender = FakeSender(self.link_max_bytes)
        self.senders.append(sender)
        return sender

    def get_queue_receiver(self, queue_name: str, **kwargs: Any) -> FakeReceiver:
        assert queue_name == QUEUE
        receiver = FakeReceiver(kwargs, self.inbox)
        self.receivers.append(receiver)
        return receiver

    def close(self) -> None:
        self.closed = True


class Clients:
    """The client factory the adapter calls once per thread."""

    def __init__(self, link_max_bytes: int = STANDARD) -> None:
        self.link_max_bytes = link_max_bytes
        self.built: list[FakeClient] = []
        self._lock = threading.Lock()

    def __call__(self) -> FakeClient:
        client = FakeClient(self.link_max_bytes)
        with self._lock:
            self.built.append(client)
        return client

    @property
    def sent(self) -> list[RecordingBatch]:
        return [batch for client in self.built for sender in client.senders for batch in sender.sent]


def make_queue(clients: Clients, **kwargs: Any) -> ServiceBusJobQueue:
    namespace = f"{uuid.uuid4().hex[:8]}.servicebus.windows.net"
    unused_credential: Any = object()  # the fake client factory never hands it to an SDK client
    return ServiceBusJobQueue(namespace, QUEUE, unused_credential, client_factory=clients, **kwargs)


def fanout(count: int) -> list[OutgoingMessage]:
    """A release fanned out to ``count`` sites, as the fan-out service builds it."""
    release_id = make_release().release_id
    jobs = [SiteSyncJob(release_id=release_id, site=f"plant-{i:04d}") for i in range(1, count + 1)]
    return [
        OutgoingMessage(
            message_id=job.message_id,
            body=job.encode(),
            session_id=job.session_id,
            properties={"kind": job.kind.value, "release_id": job.release_id},
        )
        for job in jobs
    ]


def encoded_cost(message: OutgoingMessage) -> int:
    """Bytes one message adds to a batch, measured with a fresh real batch (independent of the adapter)."""
    batch = ServiceBusMessageBatch(max_size_in_bytes=PREMIUM)
    empty = batch.size_in_bytes
    batch.add_message(
        ServiceBusMessage(
            message.body,
            message_id=message.message_id,
            session_id=message.session_id,
            application_properties=dict(message.properties) or None,
            content_type="application/json",
        )
    )
    return batch.size_in_bytes - empty


def handed_over(clients: Clients) -> list[ServiceBusMessage]:
    return [message for batch in clients.sent for message in batch.added]


# -- what every message carries ------------------------------------------------------------------
def test_each_field_reaches_the_sdk_message() -> None:
    clients = Clients()
    queue = make_queue(clients)
    job = SiteSyncJob(release_id=make_release().release_id, site="plant-0007", kind=JobKind.RECHECK, check=3)
    scheduled = T0 + timedelta(hours=2)
    outgoing = [
        OutgoingMessage(
            message_id=job.message_id,
            body=job.encode(),
            session_id=job.session_id,
            scheduled_at=scheduled,
            time_to_live=timedelta(days=2),
            properties={"kind": "RECHECK", "check": 3, "urgent": True, "weight": 0.5},
        ),
        OutgoingMessage(message_id="plain", body=b"{}", session_id="plant-0008"),
    ]

    report = queue.send_messages(outgoing)

    assert (report.messages, report.batches) == (2, 1)
    first, second = handed_over(clients)
    assert first.message_id == job.message_id
    assert first.session_id == "plant-0007"
    assert first.scheduled_enqueue_time_utc == scheduled
    assert first.time_to_live == timedelta(days=2)
    assert first.application_properties == {"kind": "RECHECK", "check": 3, "urgent": True, "weight": 0.5}
    assert first.content_type == "application/json"
    assert b"".join(first.body) == job.encode()
    assert second.message_id == "plain"
    assert second.session_id == "plant-0008"
    assert second.scheduled_enqueue_time_utc is None
    assert second.time_to_live is None
    assert not second.application_properties
    assert second.content_type == "application/json"


def test_a_naive_schedule_is_read_as_utc() -> None:
    clients = Clients()
    make_queue(clients).send_messages(
        [OutgoingMessage(message_id="m", body=b"{}", session_id="s", scheduled_at=datetime(2026, 11, 24, 12, 0))]
    )
    assert handed_over(clients)[0].scheduled_enqueue_time_utc == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_nothing_to_send_builds_no_client() -> None:
    clients = Clients()
    assert make_queue(clients).send_messages([]) == SendReport(messages=0, batches=0)
    assert clients.built == []


# -- batching ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tier", "link_max", "max_batch_bytes", "jobs"),
    [
        ("Standard", STANDARD, None, 1000),
        ("Premium", PREMIUM, None, 1000),
        ("Premium capped to Standard", PREMIUM, STANDARD, 1000),
        ("Premium", PREMIUM, None, 9999),  # enough to split a Premium batch too
    ],
)
def test_a_fanout_goes_in_the_fewest_batches(tier: str, link_max: int, max_batch_bytes: int | None, jobs: int) -> None:
    clients = Clients(link_max)
    queue = make_queue(clients, max_batch_bytes=max_batch_bytes)
    outgoing = fanout(jobs)
    limit = max_batch_bytes or link_max

    report = queue.send_messages(outgoing)

    sent = clients.sent
    summary = f"{tier}: {len(sent)} batches for {jobs:,} jobs (sizes {[b.size_in_bytes for b in sent]}, limit {limit})"
    assert report.messages == jobs, summary
    assert report.batches == len(sent), summary
    ids = [message.message_id for message in handed_over(clients)]
    assert ids == [message.message_id for message in outgoing], "lost, duplicated or reordered: " + summary
    assert all(batch.size_in_bytes <= limit for batch in sent), summary
    # Fewest possible: order must be kept, so batches are contiguous runs, and no batch could have
    # taken the first message of the next one.
    costs = [encoded_cost(message) for message in outgoing]
    empty = ServiceBusMessageBatch(max_size_in_bytes=limit).size_in_bytes
    start = 0
    for batch, following in itertools.pairwise(sent):
        start += len(batch)
        assert batch.size_in_bytes + costs[start] > limit, f"batch not full: {summary}"
        assert following.added[0].message_id == outgoing[start].message_id, summary
    assert len(sent) == math.ceil(sum(costs) / (limit - empty)), summary


def test_a_message_too_big_for_an_empty_batch_sends_nothing() -> None:
    clients = Clients(STANDARD)
    queue = make_queue(clients)
    outgoing = fanout(2000)  # more than one Standard batch precedes the oversize message
    secret_body = b'{"payload":"' + b"x" * (STANDARD + 1) + b'"}'
    outgoing.insert(1500, OutgoingMessage(message_id="too-big:plant-9999", body=secret_body, session_id="plant-9999"))

    with pytest.raises(EntityTooLarge) as caught:
        queue.send_messages(outgoing)

    assert "too-big:plant-9999" in str(caught.value)
    assert "xxxx" not in str(caught.value)
    assert clients.sent == []


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (OutgoingMessage(message_id="m" * 129, body=b"{}", session_id="s"), "MESSAGE_ID_TOO_LONG"),
        (OutgoingMessage(message_id="ok", body=b"{}", session_id="s" * 129), "MESSAGE_ID_TOO_LONG"),
        (OutgoingMessage(message_id="", body=b"{}", session_id="s"), "MESSAGE_ID_MISSING"),
        (OutgoingMessage(message_id="ok", body=b"{}"), "SESSION_ID_REQUIRED"),
    ],
)
def test_a_bad_id_anywhere_sends_nothing(message: OutgoingMessage, code: str) -> None:
    clients = Clients()
    outgoing = [*fanout(10), message, *fanout(10)]

    with pytest.raises(InvalidInput) as caught:
        make_queue(clients).send_messages(outgoing)

    assert caught.value.code == code
    assert clients.sent == []
    assert clients.built == []  # rejected before any SDK object was made


def test_ids_of_exactly_128_characters_pass() -> None:
    clients = Clients()
    make_queue(clients).send_messages([OutgoingMessage(message_id="m" * 128, body=b"{}", session_id="s" * 128)])
    assert handed_over(clients)[0].message_id == "m" * 128


def test_a_queue_without_sessions_takes_messages_without_session_id() -> None:
    clients = Clients()
    make_queue(clients, sessions=False).send_messages([OutgoingMessage(message_id="m", body=b"{}")])
    assert handed_over(clients)[0].session_id is None


def test_a_batch_cap_above_the_link_limit_is_a_configuration_error() -> None:
    clients = Clients(STANDARD)
    with pytest.raises(ConfigurationError, match="max_batch_bytes"):
        make_queue(clients, max_batch_bytes=PREMIUM).send_messages(fanout(1))


# -- one client and sender per thread ------------------------------------------------------------
def test_each_thread_gets_its_own_client_and_sender_and_keeps_it() -> None:
    clients = Clients()
    queue = make_queue(clients)
    both_sent = threading.Barrier(2)  # both threads alive at once, so their clients coexist
    senders: dict[str, list[FakeSender]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            queue.send_messages(fanout(1))
            both_sent.wait(timeout=10)
            queue.send_messages(fanout(1))
            senders[name] = [s for c in clients.built if c.thread == threading.get_ident() for s in c.senders]
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert len(clients.built) == 2
    assert len(senders["a"]) == 1, "one thread must reuse its sender"
    assert len(senders["b"]) == 1
    assert senders["a"][0] is not senders["b"][0]
    assert [len(s.sent) for s in (senders["a"][0], senders["b"][0])] == [2, 2]

    queue.close_all()
    assert all(client.closed for client in clients.built)


def test_close_closes_only_the_calling_threads_client_and_a_later_send_builds_a_new_one() -> None:
    clients = Clients()
    queue = make_queue(clients)
    other = threading.Thread(target=queue.send_messages, args=(fanout(1),))
    other.start()
    other.join(timeout=10)
    queue.send_messages(fanout(1))
    mine = next(c for c in clients.built if c.thread == threading.get_ident())
    theirs = next(c for c in clients.built if c is not mine)

    queue.close()
    assert (mine.closed, theirs.closed) == (True, False)

    queue.send_messages(fanout(1))
    assert len(clients.built) == 3
    queue.close_all()
    assert all(client.closed for client in clients.built)


def test_after_close_all_a_thread_builds_a_fresh_client() -> None:
    clients = Clients()
    queue = make_queue(clients)
    queue.send_messages(fanout(1))
    queue.close_all()
    queue.send_messages(fanout(1))
    assert [client.closed for client in clients.built] == [True, False]


# -- error translation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sdk_error", "ours"),
    [
        (ServiceBusConnectionError(), QueueUnavailable),
        (OperationTimeoutError(), QueueUnavailable),
        (ServiceBusServerBusyError(), QueueUnavailable),
        (ServiceRequestError("dns failure"), QueueUnavailable),
        (ServiceBusError("generic", retryable=True), QueueUnavailable),
        (ServiceBusAuthenticationError(), QueueRejected),
        (ServiceBusAuthorizationError(), QueueRejected),
        (MessagingEntityNotFoundError(), QueueRejected),
        (ServiceBusError("generic", retryable=False), QueueRejected),
    ],
    ids=lambda value: type(value).__name__,
)
def test_sdk_errors_on_send_are_translated(sdk_error: BaseException, ours: type[Exception]) -> None:
    clients = Clients()
    queue = make_queue(clients)
    queue.send_messages(fanout(1))  # builds the thread's sender
    clients.built[0].senders[0].fail_with = sdk_error

    with pytest.raises(ours) as caught:
        queue.send_messages(fanout(3))

    assert caught.value.__cause__ is sdk_error
    assert QUEUE in str(caught.value)


# -- receiving and settling ----------------------------------------------------------------------
def sdk_message(
    body: bytes,
    *,
    message_id: str,
    session_id: str | None = None,
    delivery_count: int = 0,
    properties: dict[bytes, Any] | None = None,
) -> Callable[[FakeReceiver], ServiceBusReceivedMessage]:
    """A real received message as the SDK builds it from the AMQP sections of a delivery."""

    def build(receiver: FakeReceiver) -> ServiceBusReceivedMessage:
        token = uuid.uuid4()
        ms = int(T0.timestamp() * 1000)
        amqp = Message(
            header=Header(delivery_count=delivery_count),
            properties=Properties(message_id=message_id.encode(), group_id=session_id.encode() if session_id else None),
            application_properties=properties,
            data=[body],
            message_annotations={b"x-opt-enqueued-time": ms, b"x-opt-locked-until": ms + 60_000},
            delivery_annotations={b"x-opt-lock-token": token},
        )
        return ServiceBusReceivedMessage(amqp, receiver=receiver, lock_token=token)

    return build


def test_receive_without_sessions_converts_and_complete_settles_the_same_object() -> None:
    clients = Clients()
    queue = make_queue(clients, sessions=False)
    queue.send_messages([OutgoingMessage(message_id="warm-up", body=b"{}")])
    clients.built[0].inbox.extend(
        [
            sdk_message(b'{"a":1}', message_id="m1", delivery_count=0, properties={b"kind": b"FANOUT", b"check": 2}),
            sdk_message(b'{"a":2}', message_id="m2", delivery_count=3),
        ]
    )

    received = queue.receive_messages(max_count=5, max_wait=0.0)

    assert [m.message_id for m in received] == ["m1", "m2"]
    first = received[0]
    assert first.body == b'{"a":1}'
    assert first.delivery_count == 1  # the AMQP header says 0 prior failures: this is delivery 1
    assert received[1].delivery_count == 4
    assert first.enqueued_at == T0
    assert first.locked_until == T0 + timedelta(minutes=1)
    assert dict(first.properties) == {"kind": "FANOUT", "check": 2}
    (receiver,) = clients.built[0].receivers
    assert receiver.kwargs == {"receive_mode": ServiceBusReceiveMode.PEEK_LOCK}
    assert receiver.receive_args == (5, 1.0)  # a zero wait becomes the shortest useful poll

    queue.complete_message(first)
    queue.abandon_message(received[1])
    assert [(kind, m.message_id) for kind, m, _ in receiver.settled] == [("complete", "m1"), ("abandon", "m2")]
    with pytest.raises(QueueRejected):
        queue.complete_message(first)  # already settled: the token is gone


def test_dead_letter_queue_is_read_without_a_session_and_reasons_come_back() -> None:
    clients = Clients()
    queue = make_queue(clients)  # a session queue; its dead-letter sub-queue has no sessions
    queue.send_messages(fanout(1))
    clients.built[0].inbox.append(
        sdk_message(
            b"{}",
            message_id="m1",
            session_id="plant-0001",
            properties={b"DeadLetterReason": b"MALFORMED_JOB", b"DeadLetterErrorDescription": b"bad body"},
        )
    )

    (message,) = queue.receive_messages(dead_letter=True)

    (receiver,) = clients.built[0].receivers
    assert receiver.kwargs == {
        "sub_queue": ServiceBusSubQueue.DEAD_LETTER,
        "receive_mode": ServiceBusReceiveMode.PEEK_LOCK,
    }
    assert (message.dead_letter_reason, message.dead_letter_description) == ("MALFORMED_JOB", "bad body")
    assert dict(message.properties) == {}
    queue.complete_message(message)
    assert receiver.settled[0][0] == "complete"


def test_sessions_one_message_per_session_and_the_session_is_released_on_settle() -> None:
    clients = Clients()
    queue = make_queue(clients)
    queue.send_messages(fanout(1))
    client = clients.built[0]
    client.inbox.extend(
        [
            sdk_message(b"{}", message_id="m1", session_id="plant-0001"),
            sdk_message(b"{}", message_id="m2", session_id="plant-0002"),
            OperationTimeoutError(),  # no further session available
        ]
    )

    received = queue.receive_messages(max_count=10, max_wait=2.5)

    assert [(m.message_id, m.session_id) for m in received] == [("m1", "plant-0001"), ("m2", "plant-0002")]
    assert received[0].locked_until == T0 + timedelta(minutes=5)  # the session's lock
    assert len(client.receivers) == 3
    for receiver in client.receivers:
        assert receiver.kwargs == {
            "session_id": NEXT_AVAILABLE_SESSION,
            "receive_mode": ServiceBusReceiveMode.PEEK_LOCK,
            "max_wait_time": 2.5,
        }
        assert receiver.receive_args == (1, 2.5)
    assert [r.closed for r in client.receivers] == [False, False, True]

    queue.dead_letter_message(received[1], reason="MALFORMED_JOB", description="no release")
    assert client.receivers[1].settled[0][2] == {"reason": "MALFORMED_JOB", "error_description": "no release"}
    assert [r.closed for r in client.receivers] == [False, True, True]


def test_no_session_available_is_an_empty_list() -> None:
    clients = Clients()
    queue = make_queue(clients)
    queue.send_messages(fanout(1))
    clients.built[0].inbox.append(OperationTimeoutError())
    assert queue.receive_messages(max_count=3) == []
    assert clients.built[0].receivers[0].closed


def test_a_failure_after_locking_some_messages_still_hands_them_over() -> None:
    clients = Clients()
    queue = make_queue(clients)
    queue.send_messages(fanout(1))
    clients.built[0].inbox.extend([sdk_message(b"{}", message_id="m1", session_id="s1"), ServiceBusConnectionError()])
    assert [m.message_id for m in queue.receive_messages(max_count=3)] == ["m1"]


def test_a_receive_failure_with_nothing_locked_is_translated() -> None:
    clients = Clients()
    queue = make_queue(clients)
    queue.send_messages(fanout(1))
    clients.built[0].inbox.append(ServiceBusConnectionError())
    with pytest.raises(QueueUnavailable):
        queue.receive_messages()


@pytest.mark.parametrize("lost", [MessageLockLostError(), SessionLockLostError()], ids=lambda e: type(e).__name__)
def test_a_lost_lock_on_settle_is_rejected(lost: BaseException) -> None:
    clients = Clients()
    queue = make_queue(clients)
    queue.send_messages(fanout(1))
    clients.built[0].inbox.append(sdk_message(b"{}", message_id="m1", session_id="s1"))
    (message,) = queue.receive_messages()
    clients.built[0].receivers[0].settle_error = lost

    with pytest.raises(QueueRejected) as caught:
        queue.complete_message(message)

    assert caught.value.__cause__ is lost
    assert clients.built[0].receivers[0].closed  # the session is released either way


def test_a_message_received_on_another_thread_cannot_be_settled_here() -> None:
    clients = Clients()
    queue = make_queue(clients, sessions=False)
    received: list[Any] = []

    def receive() -> None:
        queue.send_messages([OutgoingMessage(message_id="warm-up", body=b"{}")])
        clients.built[-1].inbox.append(sdk_message(b"{}", message_id="m1"))
        received.extend(queue.receive_messages())

    other = threading.Thread(target=receive)
    other.start()
    other.join(timeout=10)

    with pytest.raises(QueueRejected, match="another thread"):
        queue.complete_message(received[0])


# -- configuration and the real client -----------------------------------------------------------
def test_a_malformed_connection_string_is_a_configuration_error_without_the_string() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ServiceBusJobQueue.from_connection_string("SharedAccessKey=c2VjcmV0;garbage", QUEUE)
    assert "c2VjcmV0" not in str(caught.value)


def test_a_connection_string_scoped_to_another_queue_is_refused() -> None:
    conn = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dGVzdA==;EntityPath=other"
    with pytest.raises(ConfigurationError, match=QUEUE):
        ServiceBusJobQueue.from_connection_string(conn, QUEUE)


@pytest.mark.parametrize(
    ("namespace", "queue_name", "max_batch_bytes"),
    [("", QUEUE, None), ("ns.servicebus.windows.net", "", None), ("ns.servicebus.windows.net", QUEUE, 0)],
)
def test_bad_settings_are_configuration_errors(namespace: str, queue_name: str, max_batch_bytes: int | None) -> None:
    unused_credential: Any = object()
    with pytest.raises(ConfigurationError):
        ServiceBusJobQueue(namespace, queue_name, unused_credential, max_batch_bytes=max_batch_bytes)


@pytest.mark.timeout(30)
def test_the_real_sdk_client_fails_fast_and_quietly_when_nothing_listens() -> None:
    key = "dGVzdA=="
    queue = ServiceBusJobQueue.from_connection_string(
        f"Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey={key}", QUEUE, retry_total=0
    )
    started = time.monotonic()
    try:
        with pytest.raises((QueueUnavailable, QueueRejected)) as caught:
            queue.send_messages(fanout(1))
    finally:
        queue.close_all()

    elapsed = time.monotonic() - started
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert key not in str(caught.value)
    assert "SharedAccessKey" not in str(caught.value)
    assert isinstance(caught.value.__cause__, ServiceBusError)
