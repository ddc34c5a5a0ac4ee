"""ArmConnectedRegistryReader through the real azure-mgmt-containerregistry client.

The SDK talks plain http to a loopback ARM stand-in (tests/support/arm_server.py) with a static
bearer token; nothing in the SDK is mocked, so these tests also pin how SDK 15 deserializes, retries
and raises.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.arm import ArmConnectedRegistryReader
from shared.domain.observations import ConnectionState, StatusDetail, TokenPassword
from shared.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from tests.support.arm_server import ArmServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "arm"
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
FAR_FUTURE = 4_102_444_800  # 2100-01-01, so the SDK never asks for a fresh token mid-test
SUBSCRIPTION = "6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43"
OTHER_SUBSCRIPTION = "0c9a4e21-7b3d-4f58-9e6a-15d2c8b7f3a9"
PREFIX = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-contoso-registry"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)
CR_ID = f"{PREFIX}/connectedRegistries/plant-01"
TOKEN_ID = f"{PREFIX}/tokens/plant-01"
SCOPE_MAP_ID = f"{PREFIX}/scopeMaps/plant-01"


class StaticTokenCredential:
    """A TokenCredential that always hands out the same token and records the scopes asked for."""

    def __init__(self) -> None:
        self.requested_scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        with self._lock:
            self.requested_scopes.append(scopes)
        return AccessToken("test-token", FAR_FUTURE)


def load(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return body


def serve(arm: ArmServer, *names: str) -> list[dict[str, Any]]:
    """Serve fixture files under their own ``id``."""
    bodies = [load(name) for name in names]
    for body in bodies:
        arm.put(body["id"], body)
    return bodies


def in_subscription(body: dict[str, Any], subscription: str) -> dict[str, Any]:
    moved = json.loads(json.dumps(body).replace(SUBSCRIPTION, subscription))
    assert isinstance(moved, dict)
    return moved


@pytest.fixture
def arm() -> Iterator[ArmServer]:
    with ArmServer() as server:
        yield server


@pytest.fixture
def credential() -> StaticTokenCredential:
    return StaticTokenCredential()


ReaderFactory = Callable[..., ArmConnectedRegistryReader]


@pytest.fixture
def make_reader(arm: ArmServer, credential: StaticTokenCredential) -> Iterator[ReaderFactory]:
    readers: list[ArmConnectedRegistryReader] = []

    def make(*, retry_total: int = 0, base_url: str | None = None) -> ArmConnectedRegistryReader:
        reader = ArmConnectedRegistryReader(
            credential,
            base_url=base_url or arm.base_url,
            enforce_https=False,
            clock=lambda: NOW,
            retry_total=retry_total,
        )
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def reader(make_reader: ReaderFactory) -> ArmConnectedRegistryReader:
    return make_reader()


# -- connected registries ----------------------------------------------------------------------
def test_sample_connected_registry_maps_to_state(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    serve(arm, "connected-registry.json")

    state = reader.get_connected_registry(CR_ID)

    assert state.resource_id == CR_ID
    assert state.name == "plant-01"
    assert state.connection_state is ConnectionState.ONLINE
    assert state.active is True
    assert state.mode == "ReadOnly"
    assert state.provisioning_state == "Succeeded"
    assert state.schedule == "0 22 * * *"
    assert state.sync_window == timedelta(hours=6)
    assert state.message_ttl == timedelta(days=7)
    assert state.last_sync_time == datetime(2026, 11, 24, 22, 6, 41, 203185, tzinfo=UTC)
    assert state.last_sync_time.isoformat() == "2026-11-24T22:06:41.203185+00:00"
    assert state.last_sync_time.tzinfo is UTC  # not isodate's own UTC class, which the SDK returns
    assert state.last_activity_time == datetime(2026, 11, 24, 22, 9, 13, 441765, tzinfo=UTC)
    assert state.token_id == TOKEN_ID
    assert state.status_details == (
        StatusDetail(
            type="Sync",
            code="200",
            description="Synchronization with the parent registry completed.",
            timestamp=datetime(2026, 11, 24, 22, 6, 41, 203185, tzinfo=UTC),
        ),
    )
    assert state.notifications == ("inspection/*:push", "inspection/*:delete")
    assert state.observed_at == NOW
    assert state.evidence_details()["activation"] == "Active"


def test_offline_site(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (body,) = serve(arm, "connected-registry-offline.json")

    state = reader.get_connected_registry(body["id"])

    assert state.connection_state is ConnectionState.OFFLINE
    assert state.active is True
    assert state.last_sync_time == datetime(2026, 11, 22, 22, 4, 19, 550721, tzinfo=UTC)
    assert state.status_details == ()


def test_unhealthy_site_keeps_status_details(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (body,) = serve(arm, "connected-registry-unhealthy.json")

    state = reader.get_connected_registry(body["id"])

    assert state.connection_state is ConnectionState.UNHEALTHY
    sync, gateway = state.status_details
    assert sync == StatusDetail(
        type="Sync",
        code="401",
        description="Authentication with the parent registry failed: the sync token password has expired.",
        timestamp=datetime(2026, 11, 24, 22, 0, 2, 118000, tzinfo=UTC),
    )
    assert (gateway.type, gateway.code) == ("Gateway", "200")


def test_inactive_site_that_never_synced(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (body,) = serve(arm, "connected-registry-inactive.json")

    state = reader.get_connected_registry(body["id"])

    assert state.active is False
    assert state.connection_state is ConnectionState.OFFLINE
    assert state.last_sync_time is None
    assert state.last_activity_time is None
    assert state.status_details == ()
    assert state.schedule == "0 22 * * *"
    assert state.evidence_details()["activation"] == "Inactive"


def test_continuous_schedule_without_window(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (body,) = serve(arm, "connected-registry-continuous.json")

    state = reader.get_connected_registry(body["id"])

    assert state.schedule == "* * * * *"
    assert state.sync_window is None
    assert state.message_ttl == timedelta(days=2)
    assert state.mode == "ReadWrite"
    assert state.token_id == f"{PREFIX}/tokens/plant-05"


def test_missing_optional_fields_read_as_none(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (body,) = serve(arm, "connected-registry-minimal.json")

    state = reader.get_connected_registry(body["id"])

    assert state.connection_state is ConnectionState.SYNCING
    assert state.provisioning_state == "Updating"
    assert (state.schedule, state.sync_window, state.last_sync_time, state.last_activity_time) == (None,) * 4
    assert state.message_ttl == timedelta(days=1)
    assert state.token_id == f"{PREFIX}/tokens/plant-06"
    assert (state.status_details, state.notifications) == ((), ())


def test_no_properties_at_all(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    arm.put(
        CR_ID, {"id": CR_ID, "name": "plant-01", "type": "Microsoft.ContainerRegistry/registries/connectedRegistries"}
    )

    state = reader.get_connected_registry(CR_ID)

    assert state.connection_state is ConnectionState.UNKNOWN
    assert state.active is False
    assert state.token_id is None


def test_unknown_values_and_unreadable_times_do_not_break_the_read(
    arm: ArmServer, reader: ArmConnectedRegistryReader, caplog: pytest.LogCaptureFixture
) -> None:
    body = load("connected-registry.json")
    body["properties"]["connectionState"] = "Degraded"  # a value ARM may add later
    sync = body["properties"]["parent"]["syncProperties"]
    sync["lastSyncTime"] = "yesterday"  # the SDK hands such values back as raw strings
    sync["syncWindow"] = "six hours"
    sync["messageTtl"] = "P1M"  # calendar months: counted from the observation
    arm.put(CR_ID, body)

    with caplog.at_level(logging.WARNING, logger="shared.adapters.arm"):
        state = reader.get_connected_registry(CR_ID)

    assert state.connection_state is ConnectionState.UNKNOWN
    assert state.last_sync_time is None
    assert state.sync_window is None
    assert state.message_ttl == datetime(2026, 12, 25, 6, 0, tzinfo=UTC) - NOW
    assert "lastSyncTime" in caplog.text
    assert "syncWindow" in caplog.text


# -- sync scope --------------------------------------------------------------------------------
def test_sample_sync_scope(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    serve(arm, "token.json", "scope-map.json")

    scope = reader.get_sync_scope(TOKEN_ID)

    assert scope.token_id == TOKEN_ID
    assert scope.token_enabled is True
    assert scope.repository_patterns == ("inspection/camera", "inspection/model-runtime")
    assert scope.passwords == (
        TokenPassword("password1", datetime(2026, 12, 15, 8, 13, 5, 662719, tzinfo=UTC)),
        TokenPassword("password2", datetime(2027, 9, 2, 8, 13, 5, 662719, tzinfo=UTC)),
    )
    assert scope.covers("inspection/camera")
    assert not scope.covers("inspection/other")
    assert not scope.expired(NOW)
    assert scope.expired(datetime(2027, 9, 3, tzinfo=UTC))
    assert [r.path for r in arm.requests] == [TOKEN_ID, SCOPE_MAP_ID]


def test_wildcard_scope_map(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (token, _) = serve(arm, "token-wildcard.json", "scope-map-wildcard.json")

    scope = reader.get_sync_scope(token["id"])

    assert scope.repository_patterns == ("inspection/*", "base/python")
    assert scope.covers("inspection/camera")
    assert scope.covers("inspection/new/nested")
    assert scope.covers("base/python")
    assert not scope.covers("base/node")
    assert not scope.covers("inspection")
    # Passwords without an expiry never expire.
    assert [p.expiry for p in scope.passwords] == [None, None]
    assert not scope.expired(datetime(2100, 1, 1, tzinfo=UTC))


def test_every_repository_wildcard(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    token, scope_map = serve(arm, "token.json", "scope-map.json")
    scope_map["properties"]["actions"] = ["repositories/*/content/read", "repositories/*/metadata/read"]
    arm.put(scope_map["id"], scope_map)

    scope = reader.get_sync_scope(token["id"])

    assert scope.repository_patterns == ("*",)
    assert scope.covers("anything/at/all")


def test_expired_token(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (token, _) = serve(arm, "token-expired.json", "scope-map.json")

    scope = reader.get_sync_scope(token["id"])

    assert scope.expired(NOW)
    assert scope.token_enabled is True


def test_disabled_token(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (token, _) = serve(arm, "token-disabled.json", "scope-map.json")

    scope = reader.get_sync_scope(token["id"])

    assert scope.token_enabled is False
    assert scope.repository_patterns == ("inspection/camera", "inspection/model-runtime")


def test_token_without_scope_map(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    token = load("token.json")
    del token["properties"]["scopeMapId"]
    arm.put(TOKEN_ID, token)

    scope = reader.get_sync_scope(TOKEN_ID)

    assert scope.repository_patterns == ()
    assert [r.path for r in arm.requests] == [TOKEN_ID]


# -- what goes over the wire -------------------------------------------------------------------
def test_requests_carry_bearer_token_and_api_version(
    arm: ArmServer, reader: ArmConnectedRegistryReader, credential: StaticTokenCredential
) -> None:
    serve(arm, "connected-registry.json", "token.json", "scope-map.json")

    reader.get_connected_registry(CR_ID)
    reader.get_sync_scope(TOKEN_ID)

    assert [(r.method, r.path) for r in arm.requests] == [("GET", CR_ID), ("GET", TOKEN_ID), ("GET", SCOPE_MAP_ID)]
    for request in arm.requests:
        assert request.authorization == "Bearer test-token"
        assert request.api_version == "2025-11-01"
    # The token audience follows base_url (a sovereign cloud's ARM wants its own).
    assert credential.requested_scopes == [(f"{arm.base_url}/.default",)]


def test_segment_names_are_case_insensitive(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    serve(arm, "connected-registry.json")
    lowered = CR_ID.replace("resourceGroups", "resourcegroups").replace(
        "Microsoft.ContainerRegistry/registries/contosoacr/connectedRegistries",
        "microsoft.containerregistry/REGISTRIES/contosoacr/connectedregistries",
    )

    state = reader.get_connected_registry(lowered)

    assert state.resource_id == lowered
    assert state.connection_state is ConnectionState.ONLINE


def test_one_client_per_subscription(
    arm: ArmServer, reader: ArmConnectedRegistryReader, credential: StaticTokenCredential
) -> None:
    # Each client has its own bearer-token policy, which caches the token: one get_token per client.
    (body,) = serve(arm, "connected-registry.json")
    other = in_subscription(body, OTHER_SUBSCRIPTION)
    arm.put(other["id"], other)
    serve(arm, "token.json", "scope-map.json")

    reader.get_connected_registry(CR_ID)
    reader.get_sync_scope(TOKEN_ID)
    reader.get_connected_registry(CR_ID)
    assert len(credential.requested_scopes) == 1

    state = reader.get_connected_registry(other["id"])
    reader.get_connected_registry(other["id"])

    assert state.token_id == f"/subscriptions/{OTHER_SUBSCRIPTION}" + TOKEN_ID.split(SUBSCRIPTION, 1)[1]
    assert len(credential.requested_scopes) == 2
    assert arm.requests_for(other["id"])[0].path.startswith(f"/subscriptions/{OTHER_SUBSCRIPTION}/")


def test_scope_map_in_another_subscription(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    token, scope_map = serve(arm, "token.json", "scope-map.json")
    moved = in_subscription(scope_map, OTHER_SUBSCRIPTION)
    token["properties"]["scopeMapId"] = moved["id"]
    arm.put(token["id"], token)
    arm.put(moved["id"], moved)

    scope = reader.get_sync_scope(token["id"])

    assert scope.repository_patterns == ("inspection/camera", "inspection/model-runtime")
    assert arm.requests[-1].path == moved["id"]


def test_concurrent_reads_share_clients(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    (body,) = serve(arm, "connected-registry.json")
    other = in_subscription(body, OTHER_SUBSCRIPTION)
    arm.put(other["id"], other)
    ids = [CR_ID, other["id"]] * 8

    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(pool.map(reader.get_connected_registry, ids))

    assert [s.resource_id for s in states] == ids
    assert {s.connection_state for s in states} == {ConnectionState.ONLINE}


def test_close_is_idempotent_and_reader_recovers(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    serve(arm, "connected-registry.json")
    reader.get_connected_registry(CR_ID)

    reader.close()
    reader.close()

    assert reader.get_connected_registry(CR_ID).name == "plant-01"


# -- errors ------------------------------------------------------------------------------------
def test_missing_connected_registry_is_not_found(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    with pytest.raises(NotFound) as caught:
        reader.get_connected_registry(CR_ID)

    message = str(caught.value)
    assert "connected_registries.get" in message
    assert CR_ID in message
    assert "ResourceNotFound" in message
    assert "test-token" not in message
    assert caught.value.__cause__ is not None


def test_missing_scope_map_is_not_found(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    serve(arm, "token.json")

    with pytest.raises(NotFound, match=r"scope_maps\.get") as caught:
        reader.get_sync_scope(TOKEN_ID)

    assert SCOPE_MAP_ID in str(caught.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, UpstreamUnavailable),  # a fresh role assignment takes 30-60 s to propagate
        (403, UpstreamUnavailable),
        (408, UpstreamUnavailable),
        (429, UpstreamUnavailable),
        (500, UpstreamUnavailable),
        (502, UpstreamUnavailable),
        (503, UpstreamUnavailable),
        (504, UpstreamUnavailable),
        (400, UpstreamRejected),
        (409, UpstreamRejected),
        (404, NotFound),
    ],
)
def test_http_errors_are_translated(
    arm: ArmServer, reader: ArmConnectedRegistryReader, status: int, expected: type[Exception]
) -> None:
    serve(arm, "connected-registry.json")
    arm.fail(CR_ID, status)

    with pytest.raises(expected) as caught:
        reader.get_connected_registry(CR_ID)

    message = str(caught.value)
    assert type(caught.value) is expected
    assert f"HTTP {status}" in message
    assert CR_ID in message
    assert "test-token" not in message
    assert len(arm.requests) == 1  # retry_total=0: the SDK gave up at once


def test_forbidden_message_carries_arm_explanation(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    arm.fail(
        TOKEN_ID,
        403,
        message="The client '5f1c' with object id '5f1c' does not have authorization to perform action "
        "'Microsoft.ContainerRegistry/registries/tokens/read' over scope '/subscriptions/...'.",
    )

    with pytest.raises(UpstreamUnavailable, match="AuthorizationFailed: The client '5f1c'"):
        reader.get_sync_scope(TOKEN_ID)


def test_throttling_then_success_with_one_retry(arm: ArmServer, make_reader: ReaderFactory) -> None:
    serve(arm, "connected-registry.json")
    arm.fail(CR_ID, 429, retry_after=1)
    reader = make_reader(retry_total=1)

    started = time.monotonic()
    state = reader.get_connected_registry(CR_ID)
    elapsed = time.monotonic() - started

    assert state.connection_state is ConnectionState.ONLINE
    assert len(arm.requests) == 2
    assert elapsed >= 0.9  # the SDK waited as Retry-After asked


def test_long_retry_after_is_not_waited_for(arm: ArmServer, make_reader: ReaderFactory) -> None:
    serve(arm, "connected-registry.json")
    arm.fail(CR_ID, 429, retry_after=600)
    reader = make_reader(retry_total=3)

    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="HTTP 429"):
        reader.get_connected_registry(CR_ID)

    assert time.monotonic() - started < 2
    assert len(arm.requests) == 1


def test_server_error_retried_then_given_up(arm: ArmServer, make_reader: ReaderFactory) -> None:
    serve(arm, "connected-registry.json")
    arm.fail(CR_ID, 500, times=2)
    reader = make_reader(retry_total=1)

    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        reader.get_connected_registry(CR_ID)

    assert len(arm.requests) == 2
    assert reader.get_connected_registry(CR_ID).connection_state is ConnectionState.ONLINE


def test_connection_reset_is_unavailable(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    arm.drop(CR_ID)

    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        reader.get_connected_registry(CR_ID)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html><body>502 Bad Gateway</body></html>", "text/html"), (b'{"id": ', "application/json")],
)
def test_garbled_success_is_unavailable(
    arm: ArmServer, reader: ArmConnectedRegistryReader, body: bytes, content_type: str
) -> None:
    arm.respond_raw(CR_ID, 200, body, content_type=content_type)

    with pytest.raises(UpstreamUnavailable, match=r"connected_registries\.get"):
        reader.get_connected_registry(CR_ID)


def test_server_down_is_unavailable_quickly(credential: StaticTokenCredential) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reader = ArmConnectedRegistryReader(
        credential, base_url=f"http://127.0.0.1:{port}", enforce_https=False, retry_total=0
    )
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            reader.get_connected_registry(CR_ID)
        assert time.monotonic() - started < 2
    finally:
        reader.close()


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        "plant-01",
        CR_ID + "/",
        CR_ID + "?api-version=2025-11-01",
        CR_ID + "/extra",
        CR_ID.replace(SUBSCRIPTION, "not-a-guid"),
        CR_ID.replace("Microsoft.ContainerRegistry", "Microsoft.Storage"),
        CR_ID.replace("/resourceGroups/rg-contoso-registry", ""),
        CR_ID.replace("contosoacr", "acr"),  # registry names have 5-50 characters
        CR_ID.replace("plant-01", "plant 01"),
        CR_ID.replace("plant-01", "plant-01/../../tokens/x"),
        TOKEN_ID,  # a token id where a connected registry id belongs
    ],
)
def test_malformed_connected_registry_id_is_rejected(
    arm: ArmServer, reader: ArmConnectedRegistryReader, bad_id: str
) -> None:
    with pytest.raises(UpstreamRejected, match="INVALID_RESOURCE_ID") as caught:
        reader.get_connected_registry(bad_id)

    assert "connectedRegistries/{name}" in str(caught.value)
    assert arm.requests == []


def test_malformed_token_and_scope_map_ids_are_rejected(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    with pytest.raises(UpstreamRejected, match="tokens/\\{name\\}"):
        reader.get_sync_scope(CR_ID)

    token = load("token.json")
    token["properties"]["scopeMapId"] = "plant-01"
    arm.put(TOKEN_ID, token)
    with pytest.raises(UpstreamRejected, match="scopeMaps/\\{name\\}"):
        reader.get_sync_scope(TOKEN_ID)
    assert [r.path for r in arm.requests] == [TOKEN_ID]


def test_plain_http_needs_enforce_https_off(credential: StaticTokenCredential) -> None:
    with pytest.raises(UpstreamRejected, match="INVALID_ARM_ENDPOINT"):
        ArmConnectedRegistryReader(credential, base_url="http://127.0.0.1:1")
    with pytest.raises(UpstreamRejected, match="INVALID_ARM_ENDPOINT"):
        ArmConnectedRegistryReader(credential, base_url="management.azure.com", enforce_https=False)


def test_fixture_variants_are_distinct_resources() -> None:
    # The variants are served side by side in some tests; their ids must not collide.
    ids = [load(path.name)["id"] for path in sorted(FIXTURES.glob("*.json"))]
    names = [path.name for path in sorted(FIXTURES.glob("*.json"))]
    collisions = {i for i in ids if ids.count(i) > 1}
    assert collisions == set(), dict(zip(names, ids, strict=True))
