"""Bad input at the ingress, the dev registry bridge and the listings, tried as a hostile caller would:
every case answers 400 problem+json with a stable code and changes nothing, on both store backends.
A delivery mixing good and bad events is handled as the Functions host hands events over: the good
ones are taken, the bad ones reported one by one."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from orchestrations.api.dev import DevTools
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.acr_events import MAX_DELIVERY_BYTES
from shared.domain.model import MAX_RELEASE_TAGS, Site
from shared.domain.states import SyncState
from shared.local.bridge import NOTIFICATIONS_PATH
from shared.local.runtime import LocalRuntime
from shared.ports import StateStore
from tests.fakes import FakeClock, load_event

NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=on_acr_event"
REGISTRY = "contosoacr.azurecr.io"
JSON = {"content-type": "application/json"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class LocalParent:
    """The parent registry of real-registry mode, as the bridge sees it."""

    login_server = REGISTRY

    def parent_pushed(self) -> None:
        pass


@pytest.fixture
def services(store: StateStore, tmp_path: Path) -> Iterator[Services]:
    store.upsert_sites(
        [Site(name="plant-01", repositories=("inspection/*",)), Site(name="plant-02", repositories=("inspection/*",))]
    )
    wired = bootstrap(
        Settings(data_dir=tmp_path),
        store=store,
        queue=SqliteJobQueue(tmp_path / "queue.db", clock=lambda: NOW),
        clock=FakeClock(NOW),
    )
    use_services(wired)
    yield wired
    use_services(None)
    wired.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(dev_tools=DevTools(parent=LocalParent())), raise_server_exceptions=False)


def pushed(digest_suffix: str = "a", **changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event("eventgrid-image-pushed"))
    event["id"] = str(uuid.uuid4())
    event["data"]["target"]["digest"] = "sha256:" + hashlib.sha256(digest_suffix.encode()).hexdigest()
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        holder = event
        for key in parents:
            holder = holder[key]
        holder[leaf] = value
    return event


def body(*events: Any) -> bytes:
    return json.dumps(list(events)).encode()


def nested(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth):
        inner = {"x": inner}
    return inner


def nothing_written(services: Services) -> bool:
    return services.store.list_releases().items == [] and services.queue.count() == 0  # type: ignore[attr-defined]


def assert_problem(answer: Any, code: str) -> None:
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == code, problem
    assert problem["detail"] and len(problem["detail"]) < 500 and problem["detail"].isprintable()


HOSTILE_DELIVERIES = [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "MALFORMED_JSON", id="nested-100000-deep"),
    pytest.param(body(pushed(data__target__annotations=nested(40))), "MALFORMED_EVENT", id="event-nested-40-deep"),
    pytest.param(body(pushed(id="\ud800")), "INVALID_TEXT", id="lone-surrogate-id"),
    pytest.param(b'[{"id": "\\udfff", "eventType": "x"}]', "INVALID_TEXT", id="lone-surrogate-escaped"),
    pytest.param(body(pushed(data__target__tag="1.\ud800")), "INVALID_TEXT", id="lone-surrogate-tag"),
    pytest.param(body(pushed(data__target__repository="inspection/\udc80")), "INVALID_TEXT", id="surrogate-repo"),
    pytest.param(body({**pushed(), "\ud83d": 1}), "INVALID_TEXT", id="lone-surrogate-key"),
    pytest.param(body(pushed(id="x" * 40_000)), "FIELD_TOO_LONG", id="event-id-40000"),
    pytest.param(body(pushed(data__target__digest="sha256:" + "a" * 100_000)), "FIELD_TOO_LONG", id="digest-100000"),
    pytest.param(body(pushed(data__target__digest="sha999:" + "a" * 300)), "INVALID_DIGEST", id="digest-300-unknown"),
    pytest.param(body(pushed(data__target__digest="sha256:" + "A" * 64)), "INVALID_DIGEST", id="digest-upper-hex"),
    pytest.param(body(pushed(data__target__repository="a" * 100_000)), "FIELD_TOO_LONG", id="repository-100000"),
    pytest.param(body(pushed(data__target__repository="UPPER/case")), "INVALID_REPOSITORY", id="repository-upper"),
    pytest.param(body(pushed(data__target__tag="t" * 200)), "INVALID_TAG", id="tag-200"),
    pytest.param(body(pushed(data__target__tag="-leading")), "INVALID_TAG", id="tag-leading-dash"),
    pytest.param(body(pushed(data__target__mediaType="m" * 5000)), "FIELD_TOO_LONG", id="media-type-5000"),
    pytest.param(body(pushed(data__actor={"name": "n" * 5000})), "FIELD_TOO_LONG", id="actor-5000"),
    pytest.param(body(pushed(eventTime="0001-01-01T00:00:00Z")), "INVALID_TIME", id="year-0001"),
    pytest.param(body(pushed(eventTime="0001-01-01T00:00:00+01:00")), "INVALID_TIME", id="year-0001-offset"),
    pytest.param(body(pushed(eventTime="9999-12-31T23:59:59-01:00")), "INVALID_TIME", id="year-9999-offset"),
    pytest.param(body(pushed(eventTime="1999-12-31T23:59:59Z")), "INVALID_TIME", id="year-1999"),
    pytest.param(body(pushed(eventTime="yesterday")), "INVALID_TIME", id="time-not-iso"),
    pytest.param(body(pushed(eventTime="2026-11-24T09:41:12")), "INVALID_TIME", id="time-naive"),
    pytest.param(body(pushed(eventTime=12, data__timestamp=None)), "MISSING_FIELD", id="time-a-number"),
    pytest.param(body(pushed(data=[1, 2])), "MISSING_FIELD", id="data-a-list"),
    pytest.param(body(pushed(data__target="x")), "MISSING_FIELD", id="target-a-string"),
    pytest.param(body(pushed(eventType=None)), "MISSING_FIELD", id="no-event-type"),
    pytest.param(body(pushed(id=7)), "MISSING_FIELD", id="id-a-number"),
    pytest.param(body("an event"), "MALFORMED_EVENT", id="event-a-string"),
    pytest.param(b"[]", "MALFORMED_EVENT", id="empty-array"),
    pytest.param(b"1", "MALFORMED_EVENT", id="a-number"),
    pytest.param(b"\xff\xfe[]", "MALFORMED_JSON", id="not-utf8"),
    pytest.param(b"\xef\xbb\xbf[]", "MALFORMED_EVENT", id="byte-order-mark-then-empty"),
    pytest.param(b'[{"size": ' + b"9" * 5000 + b"}]", "MALFORMED_JSON", id="integer-5000-digits"),
    pytest.param(b'[{"id": "a"', "MALFORMED_JSON", id="truncated"),
    pytest.param(body(*[pushed(str(n)) for n in range(5001)]), "BATCH_TOO_LARGE", id="5001-events"),
    pytest.param(b"[" + b" " * MAX_DELIVERY_BYTES + b"]", "BATCH_TOO_LARGE", id="over-1-MiB"),
    pytest.param(
        json.dumps({"specversion": "1.0", "id": "c", "source": "/x", "data": {}}).encode(),
        "MISSING_FIELD",
        id="cloudevent-without-type",
    ),
    pytest.param(
        body({"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {}}),
        "MISSING_FIELD",
        id="validation-without-code",
    ),
    pytest.param(body(pushed(id="a"), pushed(id="\ud800")).replace(b'"a"', b'""'), "MISSING_FIELD", id="all-bad"),
]


@pytest.mark.parametrize(("payload", "code"), HOSTILE_DELIVERIES)
def test_a_hostile_delivery_is_refused_with_its_code_and_changes_nothing(
    client: TestClient, services: Services, payload: bytes, code: str
) -> None:
    assert_problem(client.post(WEBHOOK, content=payload, headers=JSON), code)
    assert nothing_written(services)


@contextlib.contextmanager
def served(app: Any) -> Iterator[int]:
    """The app on a real HTTP server on loopback (the test client reads a whole body before the app runs)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_chunked_body_is_read_only_up_to_the_limit(services: Services) -> None:
    chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b" " * (1024 * 1024))
    sent, answer = 0, b""
    with served(create_app()) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            b"POST " + WEBHOOK.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        connection.setblocking(False)
        while sent < 300 * len(chunk) and not answer:
            with contextlib.suppress(BlockingIOError):
                answer = connection.recv(65536)
            try:
                sent += connection.send(chunk)
            except BlockingIOError:
                select.select([connection], [connection], [], 1.0)
            except (BrokenPipeError, ConnectionResetError):
                break
        connection.setblocking(True)
        answer += connection.recv(65536) if not answer else b""
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"BATCH_TOO_LARGE" in rest
    # What the server took in: the limit, plus what the loopback socket buffers held, not 300 MiB.
    assert sent < 48 * 1024 * 1024, f"{sent / 2**20:.0f} MiB sent before the answer"
    assert nothing_written(services)


def test_a_batch_with_one_bad_event_takes_the_good_ones_and_reports_the_bad_one(
    client: TestClient, services: Services
) -> None:
    good, bad, other = pushed("1"), pushed("2", data__target__digest="sha256:zz"), pushed("3")
    answer = client.post(WEBHOOK, content=body(good, bad, other), headers=JSON)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["outcome"] for r in results] == ["release-created", "rejected", "release-created"]
    assert (results[1]["event_id"], results[1]["code"]) == (bad["id"], "INVALID_DIGEST")
    assert "code" not in results[0]
    assert len(services.store.list_releases().items) == 2


def test_a_validation_event_in_a_batch_is_answered_and_the_other_events_are_still_taken(
    client: TestClient, services: Services
) -> None:
    validation = {
        "id": "v-1",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
    }
    answer = client.post(WEBHOOK, content=body(validation, pushed("1")), headers=JSON)
    assert answer.status_code == 200
    assert answer.json()["validationResponse"] == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert [r["outcome"] for r in answer.json()["results"]] == ["release-created"]
    assert len(services.store.list_releases().items) == 1


def test_a_far_future_event_time_does_not_make_its_release_the_newest_of_its_tag(
    client: TestClient, services: Services
) -> None:
    client.post(WEBHOOK, content=body(pushed("old", eventTime="9999-12-31T23:59:59Z")), headers=JSON)
    [release] = services.store.list_releases().items
    assert release.pushed_at == NOW  # the arrival time, not the claimed one
    later = pushed("new", eventTime=(NOW + timedelta(minutes=1)).isoformat())
    client.post(WEBHOOK, content=body(later), headers=JSON)
    newest = client.get("/api/releases", params={"repository": "inspection/camera", "tag": "1.4.2"}).json()["value"]
    assert newest[0]["digest"] == later["data"]["target"]["digest"]
    # Checks of a row with the clamped time run like any other.
    LocalRuntime(services).process_available()
    assert services.store.get_site_sync(release.release_id, "plant-01").value.state is SyncState.PENDING


def test_a_digest_pushed_under_hundreds_of_tags_keeps_taking_pushes(client: TestClient, services: Services) -> None:
    results = []
    for n in range(MAX_RELEASE_TAGS + 50):
        answer = client.post(WEBHOOK, content=body(pushed("same", data__target__tag=f"build-{n:04d}")), headers=JSON)
        assert answer.status_code == 200, answer.text
        results.append(answer.json()["results"][0]["outcome"])
    assert results.count("ignored-tag-limit") == 50
    [release] = services.store.list_releases().items
    assert len(release.tags) == MAX_RELEASE_TAGS
    again = client.post(WEBHOOK, content=body(pushed("same", data__target__tag="build-0000")), headers=JSON)
    assert again.json()["results"][0]["outcome"] == "duplicate"


# -- the dev registry bridge -------------------------------------------------------------------------

BRIDGE = {"content-type": "application/vnd.docker.distribution.events.v1+json"}


def notification(**target: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-11-24T09:41:00Z",
        "action": "push",
        "target": {"mediaType": OCI_MANIFEST, "repository": "inspection/camera", "tag": "1.4.2", "size": 10}
        | {"digest": "sha256:" + "b" * 64}
        | target,
    }


HOSTILE_NOTIFICATIONS: list[Any] = [
    pytest.param(b"{" * 100_000, "MALFORMED_JSON", id="nested-100000-deep"),
    pytest.param(b'{"events": 1}', "MALFORMED_EVENT", id="events-not-a-list"),
    pytest.param(b"not json", "MALFORMED_JSON", id="not-json"),
    pytest.param(json.dumps({"events": [notification(tag="\ud800")]}).encode(), "INVALID_TEXT", id="surrogate"),
    pytest.param(
        json.dumps({"events": [{**notification(), "id": "i" * 40_000}]}).encode(), "FIELD_TOO_LONG", id="id-40000"
    ),
    pytest.param(
        json.dumps({"events": [notification(digest="sha256:" + "a" * 100_000)]}).encode(),
        "FIELD_TOO_LONG",
        id="digest-100000",
    ),
    pytest.param(
        json.dumps({"events": [{**notification(), "timestamp": "0001-01-01T00:00:00Z"}]}).encode(),
        "INVALID_TIME",
        id="year-0001",
    ),
    pytest.param(b'{"events": [' + b" " * MAX_DELIVERY_BYTES + b"]}", "BATCH_TOO_LARGE", id="over-1-MiB"),
]


@pytest.mark.parametrize(("payload", "code"), HOSTILE_NOTIFICATIONS)
def test_a_hostile_registry_notification_is_refused_with_its_code_and_changes_nothing(
    client: TestClient, services: Services, payload: bytes, code: str
) -> None:
    assert_problem(client.post(NOTIFICATIONS_PATH, content=payload, headers=BRIDGE), code)
    assert nothing_written(services)


def test_the_bridge_takes_the_good_notifications_of_an_envelope_with_a_bad_one(
    client: TestClient, services: Services
) -> None:
    envelope = {"events": [notification(), notification(digest="sha256:" + "c" * 64, tag="\ud800")]}
    answer = client.post(NOTIFICATIONS_PATH, content=json.dumps(envelope).encode(), headers=BRIDGE)
    assert answer.status_code == 200
    assert [r["outcome"] for r in answer.json()["results"]] == ["release-created", "rejected"]


# -- listings: forged continuation tokens --------------------------------------------------------------


def forged(payload: Any, filters: dict[str, Any]) -> str:
    """A token built as the store builds one, with whatever the forger wants to resume after."""
    digest = hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]
    text = json.dumps({"p": payload, "f": digest})
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


RELEASE_FILTERS = {"repository": None, "tag": None, "digest": None}
FORGED: list[tuple[str, Callable[[], str]]] = [
    ("/api/releases", lambda: forged({"after": "\ud800"}, RELEASE_FILTERS)),
    ("/api/releases", lambda: forged({"after": "x" * 3_000}, RELEASE_FILTERS)),
    ("/api/releases", lambda: forged({"after": "a'\u0000b"}, RELEASE_FILTERS)),
    ("/api/releases", lambda: forged({"after": ["a"]}, RELEASE_FILTERS)),
    ("/api/releases", lambda: forged({"after": "z"}, {"other": 1})),
    ("/api/releases", lambda: base64.urlsafe_b64encode(b"[" * 5000).decode()),
    ("/api/releases", lambda: "%%%"),
    ("/api/releases", lambda: "\u00e9" * 10),
]


@pytest.mark.parametrize(("path", "token"), FORGED, ids=[f"forged-{n}" for n in range(len(FORGED))])
def test_a_forged_continuation_token_is_refused(
    client: TestClient, services: Services, path: str, token: Callable[[], str]
) -> None:
    client.post(WEBHOOK, content=body(pushed("1")), headers=JSON)
    assert_problem(client.get(path, params={"continuation": token()}), "INVALID_CONTINUATION")
