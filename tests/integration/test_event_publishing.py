"""acrsync's outbound events: the Event Grid sink with the real SDK on the wire, and the SQLite outbox.

The Event Grid tests drive the real ``EventGridPublisherClient`` against a loopback receiver
(:mod:`tests.support.eventgrid_receiver`), so they check what Event Grid would actually receive:
CloudEvents 1.0 in a JSON array, the credential headers, request sizes and error statuses.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from shared.adapters.eventgrid import MAX_REQUEST_BYTES, EventGridEventSink
from shared.adapters.outbox import SqliteOutbox
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.domain.observations import OutboundEvent, OutboundEventType
from shared.errors import (
    ConfigurationError,
    EntityTooLarge,
    InvalidInput,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.ports import EventSink, Outbox, OutgoingMessage
from tests.builders import T0, make_release
from tests.fakes import StaticTokenCredential
from tests.support.eventgrid_receiver import EventGridReceiver

# Looks like a real topic key (base64, 44 characters) so a leak would be recognisable.
TOPIC_KEY = "c2VjcmV0LXRvcGljLWtleS1kby1ub3QtbGVhay0xMjM0NTY="
TOKEN = "eyJ0eXAiOiJKV1QifQ.static-test-token.signature"
SOURCE = "/acrsync/test"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json; charset=utf-8"


def make_event(
    index: int,
    *,
    type_: OutboundEventType = OutboundEventType.RELEASE_READY,
    data: dict[str, Any] | None = None,
    time: datetime = T0,
) -> OutboundEvent:
    return OutboundEvent(
        event_id=f"evt-{index:05d}",
        type=type_,
        source=SOURCE,
        subject=f"releases/rel-{index:05d}",
        time=time + timedelta(seconds=index),
        data=data if data is not None else {"releaseId": f"rel-{index:05d}", "sites": index, "ready": True},
    )


@pytest.fixture
def receiver() -> Iterator[EventGridReceiver]:
    with EventGridReceiver() as server:
        yield server


@pytest.fixture
def key_sink(receiver: EventGridReceiver) -> Iterator[EventGridEventSink]:
    # One SDK retry keeps the failure tests fast while still showing that the SDK retries.
    sink = EventGridEventSink(receiver.endpoint, AzureKeyCredential(TOPIC_KEY), enforce_https=False, retry_total=1)
    try:
        yield sink
    finally:
        sink.close()


def everything_said(exc: BaseException) -> str:
    """The exception with its whole chain, as a traceback would print it."""
    return "".join(traceback.format_exception(exc))


# -- Event Grid: wire format -------------------------------------------------------------------------
def test_key_credential_sends_cloudevents_batch_with_sas_key_header(
    receiver: EventGridReceiver, key_sink: EventGridEventSink
) -> None:
    sink: EventSink = key_sink
    events = [
        make_event(1, type_=OutboundEventType.RELEASE_READY),
        make_event(2, type_=OutboundEventType.SITE_SYNCED, data={"site": "plant-001", "nested": {"tags": ["1.4"]}}),
        make_event(3, type_=OutboundEventType.RELEASE_FAILED, time=T0.replace(microsecond=123456)),
    ]

    sink.publish(events)

    [request] = receiver.requests
    assert request.method == "POST"
    assert request.path == "/api/events"
    assert request.query == {"api-version": ["2018-01-01"]}
    assert request.headers["content-type"] == CLOUDEVENTS_BATCH
    assert request.headers["aeg-sas-key"] == TOPIC_KEY
    assert "authorization" not in request.headers
    assert int(request.headers["content-length"]) == len(request.raw_body)
    assert isinstance(request.body, list)
    assert request.body == [
        {
            "specversion": "1.0",
            "id": "evt-00001",
            "type": "acrsync.release.ready",
            "source": SOURCE,
            "subject": "releases/rel-00001",
            "time": "2026-11-24T09:41:13.000Z",
            "data": {"releaseId": "rel-00001", "sites": 1, "ready": True},
        },
        {
            "specversion": "1.0",
            "id": "evt-00002",
            "type": "acrsync.site.synced",
            "source": SOURCE,
            "subject": "releases/rel-00002",
            "time": "2026-11-24T09:41:14.000Z",
            "data": {"site": "plant-001", "nested": {"tags": ["1.4"]}},
        },
        {
            "specversion": "1.0",
            "id": "evt-00003",
            "type": "acrsync.release.failed",
            "source": SOURCE,
            "subject": "releases/rel-00003",
            "time": "2026-11-24T09:41:15.123456Z",
            "data": {"releaseId": "rel-00003", "sites": 3, "ready": True},
        },
    ]


def test_republishing_sends_the_same_deterministic_ids(
    receiver: EventGridReceiver, key_sink: EventGridEventSink
) -> None:
    events = [make_event(i) for i in range(3)]
    key_sink.publish(events)
    key_sink.publish(events)

    first, second = receiver.requests
    assert [e["id"] for e in first.body] == [e["id"] for e in second.body] == ["evt-00000", "evt-00001", "evt-00002"]


def test_times_in_other_zones_go_out_in_utc(receiver: EventGridReceiver, key_sink: EventGridEventSink) -> None:
    cest = timezone(timedelta(hours=2))
    key_sink.publish([make_event(0, time=datetime(2026, 6, 1, 14, 0, tzinfo=cest))])

    assert receiver.events[0]["time"] == "2026-06-01T12:00:00.000Z"


def test_token_credential_sends_bearer_token(receiver: EventGridReceiver) -> None:
    credential = StaticTokenCredential(TOKEN)
    sink = EventGridEventSink(receiver.endpoint, credential, enforce_https=False, retry_total=0)
    try:
        sink.publish([make_event(1), make_event(2)])
    finally:
        sink.close()

    [request] = receiver.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "aeg-sas-key" not in request.headers
    assert request.headers["content-type"] == CLOUDEVENTS_BATCH
    assert [e["id"] for e in request.body] == ["evt-00001", "evt-00002"]
    assert credential.scopes == [("https://eventgrid.azure.net/.default",)]


def test_sdk_noise_about_per_call_options_is_filtered(
    receiver: EventGridReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # enforce_https, retry_total and the timeouts are also handed to the SDK's CloudEvent model, which
    # would log "is not a known attribute" once per event and option; the adapter drops just those.
    caplog.set_level(logging.DEBUG)
    sink = EventGridEventSink(receiver.endpoint, StaticTokenCredential(TOKEN), enforce_https=False)
    try:
        sink.publish([make_event(i) for i in range(5)])
    finally:
        sink.close()

    assert len(receiver.events) == 5
    assert "is not a known attribute" not in caplog.text


def test_empty_publish_sends_nothing(receiver: EventGridReceiver, key_sink: EventGridEventSink) -> None:
    key_sink.publish([])

    assert receiver.requests == []


# -- Event Grid: batching ----------------------------------------------------------------------------
def test_600_events_of_4kb_are_split_into_requests_under_1mb_and_none_lost(
    receiver: EventGridReceiver, key_sink: EventGridEventSink
) -> None:
    events = [make_event(i, data={"index": i, "payload": f"{i:05d}" + "x" * 4000}) for i in range(600)]

    key_sink.publish(events)

    requests = receiver.requests
    assert len(requests) >= 3  # 600 x ~4.3 KB is about 2.6 MB
    for request in requests:
        assert request.status == 200
        assert len(request.raw_body) <= MAX_REQUEST_BYTES <= 1024 * 1024
        assert request.headers["content-type"] == CLOUDEVENTS_BATCH
    # Greedy packing: every request but the last is nearly full.
    assert all(len(r.raw_body) > MAX_REQUEST_BYTES * 0.8 for r in requests[:-1])
    received = receiver.events
    assert [e["id"] for e in received] == [e.event_id for e in events]
    assert [e["data"]["index"] for e in received] == list(range(600))


def test_an_oversize_event_is_refused_and_nothing_is_sent(
    receiver: EventGridReceiver, key_sink: EventGridEventSink
) -> None:
    events = [make_event(0), make_event(1, data={"blob": "x" * MAX_REQUEST_BYTES}), make_event(2)]

    with pytest.raises(EntityTooLarge, match="evt-00001"):
        key_sink.publish(events)

    assert receiver.requests == []


def test_an_event_just_under_the_limit_goes_alone(receiver: EventGridReceiver, key_sink: EventGridEventSink) -> None:
    # Fits a request alone, but not together with one more small event.
    big = make_event(1, data={"blob": "x" * (MAX_REQUEST_BYTES - 1_000)})

    key_sink.publish([make_event(0), big, make_event(2)])

    assert [[e["id"] for e in r.body] for r in receiver.requests] == [["evt-00000"], ["evt-00001"], ["evt-00002"]]
    assert all(len(r.raw_body) <= MAX_REQUEST_BYTES for r in receiver.requests)


def test_data_that_is_not_json_is_refused_before_sending(
    receiver: EventGridReceiver, key_sink: EventGridEventSink
) -> None:
    with pytest.raises(UpstreamRejected, match="evt-00001"):
        key_sink.publish([make_event(0), make_event(1, data={"when": object()})])
    with pytest.raises(UpstreamRejected, match="evt-00002"):
        key_sink.publish([make_event(2, data={"ratio": float("nan")})])

    assert receiver.requests == []


# -- Event Grid: errors ------------------------------------------------------------------------------
def test_503_is_unavailable_after_the_sdk_retry_and_the_key_never_leaks(
    receiver: EventGridReceiver, key_sink: EventGridEventSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(5, 503)

    with pytest.raises(UpstreamUnavailable, match="HTTP 503") as raised:
        key_sink.publish([make_event(1)])

    assert len(receiver.requests) == 2  # the first attempt and retry_total=1
    assert TOPIC_KEY not in everything_said(raised.value)
    assert TOPIC_KEY not in caplog.text  # azure-core's HTTP logging redacts aeg-sas-key


def test_a_single_503_is_retried_by_the_sdk(receiver: EventGridReceiver, key_sink: EventGridEventSink) -> None:
    receiver.fail_next(1, 503)

    key_sink.publish([make_event(1)])

    assert [r.status for r in receiver.requests] == [503, 200]
    assert [e["id"] for e in receiver.events] == ["evt-00001"]


def test_400_is_rejected_without_retry(receiver: EventGridReceiver, key_sink: EventGridEventSink) -> None:
    receiver.fail_next(1, 400, body={"error": {"code": "BadRequest", "message": "Invalid CloudEvent"}})

    with pytest.raises(UpstreamRejected, match="HTTP 400") as raised:
        key_sink.publish([make_event(1)])

    assert len(receiver.requests) == 1
    assert TOPIC_KEY not in everything_said(raised.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, UpstreamUnavailable),
        (403, UpstreamUnavailable),
        (408, UpstreamUnavailable),
        (429, UpstreamUnavailable),
        (500, UpstreamUnavailable),
        (502, UpstreamUnavailable),
        (404, UpstreamRejected),
        (409, UpstreamRejected),
        (413, EntityTooLarge),
    ],
)
def test_status_translation(
    receiver: EventGridReceiver, key_sink: EventGridEventSink, status: int, error: type[Exception]
) -> None:
    receiver.fail_next(5, status)

    with pytest.raises(error, match=f"HTTP {status}") as raised:
        key_sink.publish([make_event(1)])

    assert TOPIC_KEY not in everything_said(raised.value)


def test_401_with_a_token_credential_is_unavailable_and_the_token_never_leaks(receiver: EventGridReceiver) -> None:
    receiver.fail_next(5, 401)
    sink = EventGridEventSink(receiver.endpoint, StaticTokenCredential(TOKEN), enforce_https=False, retry_total=0)
    try:
        with pytest.raises(UpstreamUnavailable, match="HTTP 401") as raised:
            sink.publish([make_event(1)])
    finally:
        sink.close()

    assert TOKEN not in everything_said(raised.value)


def test_an_unreachable_topic_is_unavailable(receiver: EventGridReceiver) -> None:
    endpoint = receiver.endpoint
    receiver.stop()  # nothing listens on the port any more
    sink = EventGridEventSink(endpoint, AzureKeyCredential(TOPIC_KEY), enforce_https=False, retry_total=0, timeout=5)
    try:
        with pytest.raises(UpstreamUnavailable, match="ServiceRequestError") as raised:
            sink.publish([make_event(1)])
    finally:
        sink.close()

    assert TOPIC_KEY not in everything_said(raised.value)


def test_a_failing_later_request_leaves_earlier_ones_delivered(
    receiver: EventGridReceiver, key_sink: EventGridEventSink
) -> None:
    events = [make_event(i, data={"payload": "x" * 4000}) for i in range(300)]
    receiver.fail_next(1, 400, after=1)

    with pytest.raises(UpstreamRejected, match="request 2 of 2"):
        key_sink.publish(events)

    first, second = receiver.requests
    assert (first.status, second.status) == (200, 400)
    delivered = [e["id"] for e in receiver.events]
    assert delivered == [e.event_id for e in events[: len(delivered)]]

    # The caller re-publishes everything; subscribers dedupe the first request's ids.
    key_sink.publish(events)
    assert [e["id"] for e in receiver.events[len(delivered) :]] == [e.event_id for e in events]


def test_concurrent_publishers_share_one_sink(receiver: EventGridReceiver, key_sink: EventGridEventSink) -> None:
    errors: list[BaseException] = []

    def publish(worker: int) -> None:
        try:
            for batch in range(10):
                key_sink.publish([make_event(worker * 1000 + batch * 5 + i) for i in range(5)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(e["id"] for e in receiver.events) == sorted(
        f"evt-{w * 1000 + n:05d}" for w in range(4) for n in range(50)
    )


def test_a_closed_sink_refuses_to_publish(receiver: EventGridReceiver) -> None:
    sink = EventGridEventSink(receiver.endpoint, AzureKeyCredential(TOPIC_KEY), enforce_https=False)
    sink.publish([make_event(1)])
    sink.close()

    with pytest.raises(UpstreamRejected, match="closed"):
        sink.publish([make_event(2)])
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "endpoint", ["", "not a url", "ftp://topic.example/api/events", "http://topic.westeurope-1.eventgrid.azure.net"]
)
def test_endpoints_must_be_https(endpoint: str) -> None:
    with pytest.raises(ConfigurationError):
        EventGridEventSink(endpoint, AzureKeyCredential(TOPIC_KEY))


def test_settings_are_checked() -> None:
    endpoint = "https://topic.westeurope-1.eventgrid.azure.net/api/events"
    with pytest.raises(ConfigurationError):
        EventGridEventSink(endpoint, "not-a-credential")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        EventGridEventSink(endpoint, AzureKeyCredential(TOPIC_KEY), retry_total=-1)
    with pytest.raises(ConfigurationError):
        EventGridEventSink(endpoint, AzureKeyCredential(TOPIC_KEY), timeout=0)


# -- SQLite outbox -----------------------------------------------------------------------------------
@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(tmp_path / "acrsync.db")
    try:
        yield box
    finally:
        box.close()


def test_outbox_round_trips_events(outbox: SqliteOutbox) -> None:
    sink: Outbox = outbox
    cest = timezone(timedelta(hours=2))
    events = [
        make_event(1, data={"site": "plant-ü", "nested": {"tags": ["1.4", "latest"]}, "count": 3, "none": None}),
        make_event(2, type_=OutboundEventType.SITE_STALE, time=datetime(2026, 6, 1, 14, 0, 0, 500, tzinfo=cest)),
    ]

    sink.publish(events)

    assert sink.list_events() == events


def test_outbox_publish_is_idempotent_by_event_id(outbox: SqliteOutbox) -> None:
    outbox.publish([make_event(1), make_event(2)])
    outbox.publish([make_event(2), make_event(3)])
    outbox.publish([make_event(1, data={"changed": True})])  # same id: the stored event stays

    listed = outbox.list_events()
    assert [e.event_id for e in listed] == ["evt-00001", "evt-00002", "evt-00003"]
    assert listed[0].data == make_event(1).data


def test_outbox_keeps_publication_order_not_id_order(outbox: SqliteOutbox) -> None:
    outbox.publish([make_event(9), make_event(3)])
    outbox.publish([make_event(5)])

    assert [e.event_id for e in outbox.list_events()] == ["evt-00009", "evt-00003", "evt-00005"]


def test_outbox_pages_with_after(outbox: SqliteOutbox) -> None:
    outbox.publish([make_event(i) for i in range(25)])

    pages: list[list[str]] = []
    after: str | None = None
    while page := outbox.list_events(limit=10, after=after):
        pages.append([e.event_id for e in page])
        after = page[-1].event_id

    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == [f"evt-{i:05d}" for i in range(25)]
    assert outbox.list_events(after="evt-00024") == []


def test_outbox_refuses_an_unknown_cursor_and_a_bad_limit(outbox: SqliteOutbox) -> None:
    outbox.publish([make_event(1)])

    with pytest.raises(InvalidInput) as unknown:
        outbox.list_events(after="evt-99999")
    assert unknown.value.code == "INVALID_CURSOR"
    for limit in (0, -1):
        with pytest.raises(InvalidInput) as bad:
            outbox.list_events(limit=limit)
        assert bad.value.code == "INVALID_LIMIT"


def test_outbox_refuses_data_that_is_not_json(outbox: SqliteOutbox) -> None:
    with pytest.raises(UpstreamRejected, match="evt-00002"):
        outbox.publish([make_event(1), make_event(2, data={"when": object()})])

    assert outbox.list_events() == []  # checked before anything is stored


def test_outbox_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "acrsync.db"
    first = SqliteOutbox(path)
    first.publish([make_event(1), make_event(2)])
    first.close()

    reopened = SqliteOutbox(path)
    try:
        reopened.publish([make_event(2), make_event(3)])
        assert [e.event_id for e in reopened.list_events()] == ["evt-00001", "evt-00002", "evt-00003"]
        assert [e.event_id for e in reopened.list_events(after="evt-00001")] == ["evt-00002", "evt-00003"]
    finally:
        reopened.close()


def test_outbox_shares_the_file_with_the_store_and_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "acrsync.db"
    store = SqliteStateStore(path)
    queue = SqliteJobQueue(path)
    box = SqliteOutbox(path)
    release = make_release()
    try:
        store.create_release(release)
        queue.send_messages([OutgoingMessage(message_id="m-1", body=b"{}")])
        box.publish([make_event(1)])

        assert [e.event_id for e in box.list_events()] == ["evt-00001"]
        assert len(queue.receive_messages(max_count=5)) == 1
        assert store.get_release(release.release_id).value == release
    finally:
        box.close()
        queue.close()
        store.close()


def test_outbox_concurrent_publishers_lose_nothing(outbox: SqliteOutbox) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def publish(worker: int) -> None:
        try:
            start.wait()
            for batch in range(25):
                # Every worker also re-publishes a shared id: exactly one copy may survive.
                outbox.publish([make_event(worker * 1000 + batch * 4 + i) for i in range(4)] + [make_event(99_999)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    ids = [e.event_id for e in outbox.list_events(limit=10_000)]
    assert len(ids) == len(set(ids)) == 4 * 100 + 1
    for worker in range(4):
        mine = [i for i in ids if i != "evt-99999" and int(i[4:]) // 1000 == worker]
        assert mine == [f"evt-{worker * 1000 + n:05d}" for n in range(100)]  # each publisher's order kept
