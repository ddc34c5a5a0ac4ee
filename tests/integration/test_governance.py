"""Governance end to end through the real azure-mgmt-containerregistry SDK against the loopback ARM
fixture server (static bearer token, nothing in the SDK mocked): the inventory reads of the ARM adapter,
token expiry (sweeper, event, gauge, the site API), scope drift (API and CLI), `acrsync preflight` with
every check passing and failing and its exit codes, and `acrsync sites discover`.

Service-level tests run on a fake clock at ``NOW`` (the fixtures' dates are around it); the CLI runs on
the wall clock, so CLI tests set token expiries relative to it.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from orchestrations.api import create_app
from shared import observability
from shared.adapters.arm import ArmConnectedRegistryReader
from shared.adapters.arm_cache import CachedArmReader
from shared.adapters.outbox import SqliteOutbox
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.cli import main
from shared.config import Settings
from shared.domain.model import Site
from shared.domain.observations import ConnectionState, OutboundEventType, TokenPassword
from shared.errors import ConfigurationError, NotFound, UpstreamRejected, UpstreamUnavailable
from shared.services import governance
from shared.services.discovery import discover, discovery_yaml
from shared.services.preflight import Result, preflight
from shared.services.sites_file import load_sites_file
from shared.services.sweeper import sweep
from tests.fakes import FIXTURES, FakeClock, StaticTokenCredential
from tests.support.arm_server import ArmServer
from tests.support.server import serve as serve_app

asgi_app = create_app()

ARM = FIXTURES / "arm"
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
SUB = "6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-contoso-registry/providers/Microsoft.ContainerRegistry/registries"
REG = f"{RG}/contosoacr"
BASIC = f"{RG}/contosobasic"
LEGACY = f"{RG}/contosolegacy"
CR = f"{REG}/connectedRegistries"
TOKENS = f"{REG}/tokens"
NOTIFICATIONS = json.loads((ARM / "lists" / "notifications-lists.json").read_text())
CAMERA_AND_RUNTIME = ("inspection/camera", "inspection/model-runtime")


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((ARM / name).read_text())
    return body


def serve(arm: ArmServer, *names: str) -> list[dict[str, Any]]:
    bodies = [fixture(name) for name in names]
    for body in bodies:
        arm.put(body["id"], body)
    return bodies


Edit = Callable[[dict[str, Any]], None]


def serve_fleet(arm: ArmServer, edits: dict[str, Edit] | None = None, *, registry: str = "registry.json") -> None:
    """The Premium registry, its connected registries on two list pages (plant-01, plant-04 | plant-05,
    line-07), and the sync tokens and scope maps of plant-01, plant-05 and line-07. ``edits`` change a
    connected registry's body (by name) before it is served. plant-01's Arc cluster is Connected, with
    its connected registry extension."""
    serve(arm, registry, "token.json", "scope-map.json", "token-wildcard.json", "scope-map-wildcard.json")
    serve_cluster(arm, CLUSTER_01)
    serve(arm, "token-overbroad.json", "scope-map-overbroad.json")
    first = fixture("lists/connected-registries-page-1.json")
    second = fixture("lists/connected-registries-page-2.json")
    for page in (first, second):
        for body in page["value"]:
            (edits or {}).get(body["name"], lambda _: None)(body)
    skip_token = parse_qs(urlsplit(first["nextLink"]).query)["$skipToken"][0]
    arm.put_page(f"{REG}/connectedRegistries", first)
    arm.put_page(f"{REG}/connectedRegistries", second, skip_token=skip_token)


def empty_fleet(arm: ArmServer, registry_id: str) -> None:
    arm.put_page(f"{registry_id}/connectedRegistries", {"value": []})


def with_expiries(body: dict[str, Any], *expiries: datetime | None) -> dict[str, Any]:
    passwords = []
    for index, expiry in enumerate(expiries):
        password: dict[str, Any] = {"creationTime": "2026-09-02T08:13:05.6627190Z", "name": f"password{index + 1}"}
        if expiry is not None:
            password["expiry"] = expiry.isoformat().replace("+00:00", "Z")
        passwords.append(password)
    body["properties"]["credentials"]["passwords"] = passwords
    return body


@pytest.fixture
def arm() -> Iterator[ArmServer]:
    # The container registry API, and the Arc clusters' and their extensions' (site health).
    with ArmServer(api_versions={"2025-11-01", "2026-05-01", "2025-03-01"}) as server:
        yield server


@pytest.fixture
def reader(arm: ArmServer) -> Iterator[ArmConnectedRegistryReader]:
    reader = ArmConnectedRegistryReader(
        StaticTokenCredential(), base_url=arm.base_url, enforce_https=False, clock=lambda: NOW, retry_total=0
    )
    yield reader
    reader.close()


@pytest.fixture
def metrics() -> Iterator[InMemoryMetricReader]:
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    observability.use_meter_provider(provider)
    yield metric_reader
    observability.use_meter_provider(None)
    provider.shutdown()


def gauge(metric_reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = metric_reader.get_metrics_data()
    return [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


# -- the ARM adapter's inventory reads -------------------------------------------------------------


def test_registries_get_reads_sku_data_endpoint_login_server_and_location(
    arm: ArmServer, reader: ArmConnectedRegistryReader
) -> None:
    serve(arm, "registry.json", "registry-basic.json", "registry-no-data-endpoint.json")

    premium, basic, legacy = (reader.get_registry(rid) for rid in (REG, BASIC, LEGACY))

    assert (premium.name, premium.sku, premium.data_endpoint_enabled) == ("contosoacr", "Premium", True)
    assert (premium.login_server, premium.location, premium.is_premium) == ("contosoacr.azurecr.io", "westeurope", True)
    assert (basic.sku, basic.is_premium, basic.data_endpoint_enabled) == ("Basic", False, False)
    assert (legacy.sku, legacy.data_endpoint_enabled) == ("Premium", False)
    assert all(r.authorization == "Bearer test-token" and r.api_version == "2025-11-01" for r in arm.requests)


def test_connected_registries_are_listed_across_pages(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    serve_fleet(arm)

    states = reader.list_connected_registries(REG)

    assert [s.name for s in states] == ["plant-01", "plant-04", "plant-05", "line-07"]
    plant01, plant04, plant05, line07 = states
    assert plant01.resource_id == f"{CR}/plant-01" and plant01.observed_at == NOW
    assert plant01.client_token_ids == (f"{TOKENS}/plant-01-client",) and plant01.parent_id is None
    assert (plant04.active, plant04.client_token_ids) == (False, ())
    assert (plant05.schedule, plant05.mode, plant05.connection_state) == (
        "* * * * *",
        "ReadWrite",
        ConnectionState.ONLINE,
    )
    assert (line07.mode, line07.parent_id, line07.notifications) == ("ReadWrite", f"{CR}/plant-01", ("*:*",))
    pages = arm.requests_for(f"{REG}/connectedRegistries")
    assert len(pages) == 2
    assert "$skipToken" not in pages[0].query and pages[1].query["$skipToken"] == ["eyJwYWdlIjoyfQ"]
    assert all(page.api_version == "2025-11-01" and page.authorization == "Bearer test-token" for page in pages)


def test_tokens_get_reads_status_and_expiries_without_the_scope_map(
    arm: ArmServer, reader: ArmConnectedRegistryReader
) -> None:
    serve(arm, "token-client-expiring.json", "token-disabled.json")

    client = reader.get_token(f"{TOKENS}/plant-01-client")
    disabled = reader.get_token(f"{TOKENS}/plant-02")

    assert (client.name, client.status, client.enabled) == ("plant-01-client", "enabled", True)
    assert client.passwords[0] == TokenPassword("password1", datetime(2026, 12, 5, 9, 2, 11, 412773, tzinfo=UTC))
    assert client.scope_map_id == f"{REG}/scopeMaps/plant-01-client"
    assert (disabled.status, disabled.enabled) == ("disabled", False)
    assert [r.path for r in arm.requests] == [f"{TOKENS}/plant-01-client", f"{TOKENS}/plant-02"]


def test_inventory_errors_are_translated(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    with pytest.raises(NotFound, match=r"registries\.get"):
        reader.get_registry(REG)
    arm.fail(f"{REG}/connectedRegistries", 403)
    with pytest.raises(UpstreamUnavailable, match=r"connected_registries\.list.*HTTP 403"):
        reader.list_connected_registries(REG)
    serve_fleet(arm)
    arm.fail(f"{REG}/connectedRegistries", 503)  # a failing page is never half a list
    with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
        reader.list_connected_registries(REG)
    requests_before = len(arm.requests)
    with pytest.raises(UpstreamRejected, match="INVALID_RESOURCE_ID"):
        reader.get_registry(f"{CR}/plant-01")
    with pytest.raises(UpstreamRejected, match="INVALID_RESOURCE_ID"):
        reader.list_connected_registries("contosoacr")
    assert len(arm.requests) == requests_before


# -- token expiry ------------------------------------------------------------------------------------

TOKEN_SITES = [
    Site(name="plant-01", repositories=CAMERA_AND_RUNTIME, connected_registry=f"{CR}/plant-01"),
    Site(name="plant-02", repositories=("inspection/*",), connected_registry=f"{CR}/plant-02"),
    Site(name="plant-05", repositories=("inspection/*", "base/python"), connected_registry=f"{CR}/plant-05"),
    Site(name="store-01", repositories=("retail/*",)),  # no connected registry: nothing to check
]
EXPECTED_EVENT_IDS = {
    "plant-01:token:plant-01:expiring:2026-12-15",  # sync token, 20 days left
    "plant-01:token:plant-01-client:expiring:2026-12-05",  # client token, 10 days left
    "plant-02:token:plant-02:expiring:2026-12-15",  # a disabled sync token still expires
    "plant-02:token:plant-02-client:expiring:2026-11-01",  # expired
}


def serve_token_fleet(arm: ArmServer) -> None:
    serve(arm, "connected-registry.json", "connected-registry-offline.json", "connected-registry-continuous.json")
    serve(arm, "token.json", "token-disabled.json", "token-wildcard.json")
    serve(arm, "token-client-expiring.json", "token-client-expired.json")  # plant-05-client: not in ARM


Wire = Callable[..., Services]


@pytest.fixture
def wire(tmp_path: Path, reader: ArmConnectedRegistryReader) -> Iterator[Wire]:
    built: list[Services] = []

    def make(settings: Settings | None = None, *, arm: Any = None, sites: list[Site] = TOKEN_SITES) -> Services:
        path = tmp_path / f"s{len(built)}.db"
        store = SqliteStateStore(path)
        store.upsert_sites(sites)
        clock = FakeClock(NOW)
        services = bootstrap(
            settings or Settings(data_dir=tmp_path),
            store=store,
            queue=SqliteJobQueue(path, clock=clock.now),
            clock=clock,
            arm=arm or reader,
            events=SqliteOutbox(path),
        )
        use_services(services)
        built.append(services)
        return services

    yield make
    use_services(None)
    for services in built:
        services.queue.close()  # type: ignore[attr-defined]
        services.store.close()
        services.events.close()  # type: ignore[attr-defined]


def token_events(services: Services) -> list[Any]:
    events = services.outbox.list_events(limit=1000)  # type: ignore[union-attr]
    return [event for event in events if event.type is OutboundEventType.SITE_TOKEN_EXPIRING]


def test_the_sweeper_flags_expiring_and_expired_tokens_once_and_sets_the_gauge(
    arm: ArmServer, wire: Wire, metrics: InMemoryMetricReader
) -> None:
    serve_token_fleet(arm)
    services = wire()

    sweep(services)

    events = token_events(services)
    assert {event.event_id for event in events} == EXPECTED_EVENT_IDS
    expired = next(event for event in events if event.event_id.startswith("plant-02:token:plant-02-client"))
    assert expired.subject == "sites/plant-02/tokens/plant-02-client" and expired.source == "/acrsync/sites/plant-02"
    assert expired.data == {
        "site": "plant-02",
        "connected_registry": f"{CR}/plant-02",
        "horizon_days": 30,
        "token": "plant-02-client",
        "token_id": f"{TOKENS}/plant-02-client",
        "role": "client",
        "status": "enabled",
        "state": "expired",
        "expires_at": "2026-11-01T07:30:00+00:00",
        "days_left": -24,
        "expiring": True,
    }
    [point] = gauge(metrics, "acrsync.tokens.expiring")
    assert point.value == 4 and dict(point.attributes or {}) == {}

    # Within the hour no token is read again; later, the same expiries are not announced again.
    def token_reads() -> int:
        return sum("/tokens/" in request.path for request in arm.requests)

    reads = token_reads()
    services.clock.advance(minutes=30)  # type: ignore[attr-defined]
    sweep(services)
    assert token_reads() == reads
    services.clock.advance(hours=2)  # type: ignore[attr-defined]
    sweep(services)
    assert token_reads() == 2 * reads
    assert len(token_events(services)) == 4


def test_a_renewed_token_is_news_again(arm: ArmServer, wire: Wire) -> None:
    serve_token_fleet(arm)
    services = wire(sites=TOKEN_SITES[:1])
    assert governance.check_tokens(services) is not None
    renewed = with_expiries(fixture("token-client-expiring.json"), NOW + timedelta(days=12))
    arm.put(renewed["id"], renewed)

    report = governance.check_tokens(services, force=True)

    assert report is not None and report.tokens_flagged == 2
    ids = sorted(event.event_id for event in token_events(services))
    assert ids == [
        "plant-01:token:plant-01-client:expiring:2026-12-05",
        "plant-01:token:plant-01-client:expiring:2026-12-07",
        "plant-01:token:plant-01:expiring:2026-12-15",
    ]


def test_the_horizon_setting_decides_what_is_expiring(arm: ArmServer, wire: Wire, tmp_path: Path) -> None:
    serve_token_fleet(arm)
    services = wire(
        Settings.from_environ({"ACRSYNC_DATA_DIR": str(tmp_path), "ACRSYNC_TOKEN_EXPIRY_HORIZON_DAYS": "5"})
    )

    report = governance.check_tokens(services)

    assert report is not None and (report.sites_checked, report.tokens_flagged) == (3, 1)  # only the expired one
    assert [event.event_id for event in token_events(services)] == [
        "plant-02:token:plant-02-client:expiring:2026-11-01"
    ]


def test_site_api_shows_tokens_the_list_from_the_sweep_the_site_live(arm: ArmServer, wire: Wire) -> None:
    serve_token_fleet(arm)
    services = wire()
    client = TestClient(asgi_app)

    before = client.get("/api/sites").json()["value"]
    assert all(site["tokens"] is None for site in before)  # nothing swept in this process yet
    assert arm.requests == []  # the list never asks ARM

    sweep(services)
    requests = len(arm.requests)
    listed = {site["name"]: site["tokens"] for site in client.get("/api/sites").json()["value"]}
    assert len(arm.requests) == requests

    assert listed["store-01"] is None
    assert set(listed["plant-01"]) == {"plant-01", "plant-01-client"}
    assert listed["plant-01"]["plant-01-client"] == {
        "token": "plant-01-client",
        "token_id": f"{TOKENS}/plant-01-client",
        "role": "client",
        "status": "enabled",
        "state": "expiring",
        "expires_at": "2026-12-05T09:02:11.412773+00:00",
        "days_left": 10,
        "expiring": True,
        "checked_at": NOW.isoformat(),
    }
    assert listed["plant-05"]["plant-05"]["state"] == "ok" and listed["plant-05"]["plant-05"]["expires_at"] is None
    assert listed["plant-05"]["plant-05-client"]["state"] == "missing"
    assert listed["plant-02"]["plant-02"]["status"] == "disabled"

    detail = client.get("/api/sites/plant-01")
    assert detail.status_code == 200
    live = detail.json()["tokens"]
    assert live["plant-01"]["role"] == "sync" and live["plant-01"]["days_left"] == 20
    assert "checked_at" not in live["plant-01"]  # a live read: the ETag stays put while nothing changes
    assert client.get("/api/sites/plant-01", headers={"If-None-Match": detail.headers["etag"]}).status_code == 304
    assert len(arm.requests) > requests


def test_arm_trouble_leaves_the_site_tokens_null_and_the_last_answer_in_the_list(arm: ArmServer, wire: Wire) -> None:
    serve_token_fleet(arm)
    services = wire(sites=TOKEN_SITES[:1])
    governance.check_tokens(services)
    arm.fail(f"{CR}/plant-01", 503, times=10)

    assert TestClient(asgi_app).get("/api/sites/plant-01").json()["tokens"] is None
    report = governance.check_tokens(services, force=True)
    assert report is not None and report.sites_failed == 1
    assert governance.cached_tokens_view(services, "plant-01") is not None  # the previous answer is kept


def test_production_wiring_reads_tokens_through_the_cache_with_tokens_get_only(
    arm: ArmServer, wire: Wire, reader: ArmConnectedRegistryReader
) -> None:
    serve_token_fleet(arm)
    services = wire(sites=TOKEN_SITES[:1], arm=CachedArmReader(reader, FakeClock(NOW)))

    report = governance.check_tokens(services)

    assert report is not None and report.tokens_flagged == 2
    assert [r.path for r in arm.requests] == [f"{CR}/plant-01", f"{TOKENS}/plant-01", f"{TOKENS}/plant-01-client"]
    governance.check_tokens(services, force=True)
    assert len(arm.requests) == 3  # cached


# -- scope drift -----------------------------------------------------------------------------------

DRIFT_SITES = [
    Site(name="plant-01", repositories=("inspection/*",), connected_registry=f"{CR}/plant-01"),
    Site(name="plant-05", repositories=("inspection/*", "base/python"), connected_registry=f"{CR}/plant-05"),
    Site(name="line-07", repositories=("inspection/*",), connected_registry=f"{CR}/line-07"),
    Site(name="store-01", repositories=("retail/*",)),
]


def test_drift_api_both_directions_with_wildcards(arm: ArmServer, wire: Wire) -> None:
    serve_fleet(arm)
    serve(arm, "connected-registry.json", "connected-registry-continuous.json")
    arm.put(f"{CR}/line-07", fixture("lists/connected-registries-page-2.json")["value"][1])
    wire(sites=DRIFT_SITES)
    client = TestClient(asgi_app)

    plant01 = client.get("/api/sites/plant-01/drift")
    assert plant01.status_code == 200
    assert plant01.json() == {
        "site": "plant-01",
        "connected_registry": f"{CR}/plant-01",
        "token_id": f"{TOKENS}/plant-01",
        "status": "drift",
        "reason": None,
        "approved": ["inspection/*"],
        "granted": list(CAMERA_AND_RUNTIME),
        "over_exposed": [],
        "over_exposed_count": 0,
        "missing": [{"pattern": "inspection/*", "overlaps": list(CAMERA_AND_RUNTIME)}],
        "missing_count": 1,
    }
    line07 = client.get("/api/sites/line-07/drift").json()
    assert line07["status"] == "drift" and line07["granted"] == ["*"]
    assert line07["over_exposed"] == [{"pattern": "*", "overlaps": ["inspection/*"]}] and line07["missing"] == []
    assert line07["over_exposed_count"] == 1
    plant05 = client.get("/api/sites/plant-05/drift")
    assert plant05.json()["status"] == "ok"
    assert (
        client.get("/api/sites/plant-05/drift", headers={"If-None-Match": plant05.headers["etag"]}).status_code == 304
    )
    store01 = client.get("/api/sites/store-01/drift").json()
    assert (store01["status"], store01["granted"], store01["reason"]) == (
        "unknown",
        None,
        "the site names no connected registry",
    )

    missing = client.get("/api/sites/plant-99/drift")
    assert missing.status_code == 404 and missing.headers["x-ms-error-code"] == "SITE_NOT_FOUND"
    assert client.get("/api/sites/plant-01/drift?top=1").headers["x-ms-error-code"] == "UNKNOWN_QUERY_PARAMETER"
    arm.fail(f"{CR}/plant-01", 503)
    unavailable = client.get("/api/sites/plant-01/drift")
    assert unavailable.status_code == 503 and unavailable.headers["content-type"] == "application/problem+json"
    arm.remove(f"{REG}/scopeMaps/plant-01")
    gone = client.get("/api/sites/plant-01/drift").json()
    assert gone["status"] == "unknown" and "scope_maps.get" in gone["reason"]


@pytest.fixture(scope="module")
def api_server() -> Iterator[str]:
    with serve_app(asgi_app) as base_url:
        yield base_url


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def acrsync(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Run]:
    for name in (
        "ACRSYNC_API_KEY",
        "ACRSYNC_OUTPUT",
        "ACRSYNC_ARM_ENDPOINT",
        "ACRSYNC_TOKEN_EXPIRY_HORIZON_DAYS",
        "CI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACRSYNC_DATA_DIR", str(tmp_path / "cli-data"))

    def run(*args: str) -> Run:
        capsys.readouterr()
        # The CLI's composition root, with the loopback ARM server's bearer token instead of Entra ID.
        services = bootstrap(Settings.from_environ(os.environ), credential=StaticTokenCredential())
        try:
            code = main(list(args), services=services)
        finally:
            services.close()
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def test_sites_drift_cli(
    arm: ArmServer, wire: Wire, api_server: str, acrsync: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACRSYNC_API_URL", api_server)
    serve_fleet(arm)
    serve(arm, "connected-registry.json", "connected-registry-continuous.json")
    arm.put(f"{CR}/line-07", fixture("lists/connected-registries-page-2.json")["value"][1])
    wire(sites=DRIFT_SITES)

    one = acrsync("sites", "drift", "--site", "line-07", "-o", "json")
    assert one.code == 1, one.err
    [view] = one.json()
    assert view["over_exposed"][0]["pattern"] == "*" and "drift at 1 of 1 sites: line-07" in one.err

    clean = acrsync("sites", "drift", "--site", "plant-05", "-o", "json")
    assert clean.code == 0 and clean.json()[0]["status"] == "ok"

    table = acrsync("sites", "drift")
    assert table.code == 1
    lines = table.out.splitlines()
    assert lines[0].split()[:4] == ["Site", "Status", "OverExposed", "Missing"]
    plant01 = next(line for line in lines if line.startswith("plant-01"))
    assert "drift" in plant01 and "inspection/*" in plant01
    assert any(line.startswith("store-01") and "unknown" in line for line in lines)
    assert "drift at 2 of 4 sites: line-07, plant-01" in table.err  # sites come ordered by name

    assert acrsync("sites", "drift", "--site", "Plant_01").code == 3
    assert acrsync("sites", "drift", "--site", "plant-99").code == 1


# -- preflight -------------------------------------------------------------------------------------


def wall_clock_tokens(arm: ArmServer, *, sync_days: float | None = 200, name: str = "token.json") -> None:
    """Sync token passwords relative to the wall clock (the CLI's time)."""
    now = datetime.now(UTC)
    expiry = now + timedelta(days=sync_days) if sync_days is not None else None
    body = with_expiries(fixture(name), expiry, now + timedelta(days=400) if sync_days and sync_days > 0 else expiry)
    arm.put(body["id"], body)


def sites_file(tmp_path: Path, *sites: dict[str, Any]) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"sites": list(sites)}, sort_keys=False))
    return path


CLUSTER_01 = f"/subscriptions/{SUB}/resourceGroups/rg-plants/providers/Microsoft.Kubernetes/connectedClusters/plant-01"
PLANT_01 = {
    "name": "plant-01",
    "repositories": list(CAMERA_AND_RUNTIME),
    "connected_registry": f"{CR}/plant-01",
    "schedule": "0 22 * * *",
    "sync_window": "PT6H",
    "message_ttl": "P7D",
    "cluster_id": CLUSTER_01,
}


def serve_cluster(
    arm: ArmServer,
    cluster_id: str,
    *,
    connectivity: str = "Connected",
    extension: str | None = "Succeeded",
    extension_name: str = "cr",
) -> None:
    """The site's Arc cluster and its extensions as ARM shows them."""
    arm.put(
        cluster_id,
        {
            "id": cluster_id,
            "name": cluster_id.rsplit("/", 1)[-1],
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "properties": {"agentPublicKeyCertificate": "", "connectivityStatus": connectivity},
        },
    )
    extensions = []
    if extension is not None:
        extensions.append(
            {
                "id": f"{cluster_id}/providers/Microsoft.KubernetesConfiguration/extensions/{extension_name}",
                "name": extension_name,
                "properties": {
                    "extensionType": "Microsoft.ContainerRegistry.ConnectedRegistry",
                    "provisioningState": extension,
                    "currentVersion": "0.11.0",
                },
            }
        )
    arm.put_page(f"{cluster_id}/providers/Microsoft.KubernetesConfiguration/extensions", {"value": extensions})


LINE_07 = {
    "name": "line-07",
    "repositories": ["inspection/*"],
    "connected_registry": f"{CR}/line-07",
    "schedule": "30 22 * * *",
    "sync_window": "PT4H",
    "message_ttl": "P3D",
}


def results(run: Run) -> dict[tuple[str, str], tuple[str, str]]:
    return {(c["target"], c["check"]): (c["result"], c["detail"]) for c in run.json()}


def run_preflight(acrsync: Callable[..., Run], arm: ArmServer, *args: str, registry: str = REG) -> Run:
    return acrsync("preflight", "--registry", registry, "--arm-endpoint", arm.base_url, "-o", "json", *args)


def test_preflight_passes_a_well_set_up_registry_and_site(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve_fleet(arm)
    wall_clock_tokens(arm)

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)))

    assert run.code == 0, run.err
    checks = run.json()
    assert [(c["check"], c["target"], c["result"]) for c in checks] == [
        ("registry", "contosoacr", "ok"),
        ("registry-sku", "contosoacr", "ok"),
        ("data-endpoint", "contosoacr", "ok"),
        ("connected-registry", "plant-01", "ok"),
        ("activation", "plant-01", "ok"),
        ("mode", "plant-01", "ok"),
        ("sync-settings", "plant-01", "ok"),
        ("notifications", "plant-01", "ok"),
        ("sync-token", "plant-01", "ok"),
        ("scope", "plant-01", "ok"),
        ("arc-cluster", "plant-01", "ok"),
        ("registry-extension", "plant-01", "ok"),
    ]
    assert checks[0]["detail"] == "exists (contosoacr.azurecr.io, westeurope)"
    assert checks[6]["detail"] == "schedule 0 22 * * *, window PT6H, TTL P7D"
    assert checks[-1]["detail"] == "Succeeded 0.11.0"
    assert "12 checks: 12 ok, 0 warn, 0 fail" in run.err
    # Every ARM call carried the static test token.
    assert {r.authorization for r in arm.requests} == {"Bearer test-token"}


def test_preflight_prints_a_table_by_default_and_reads_sites_from_the_store(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve_fleet(arm)
    wall_clock_tokens(arm)
    (tmp_path / "cli-data").mkdir()
    store = SqliteStateStore(tmp_path / "cli-data" / "acrsync.db")
    store.upsert_sites(load_sites_file(sites_file(tmp_path, PLANT_01).read_text()).sites)
    store.close()

    run = acrsync("preflight", "--registry", REG, "--arm-endpoint", arm.base_url)

    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split() == ["Check", "Target", "Result", "Detail"]
    assert any(line.split()[:3] == ["scope", "plant-01", "ok"] for line in lines)


def test_preflight_fails_a_basic_registry(arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path) -> None:
    serve(arm, "registry-basic.json")
    empty_fleet(arm, BASIC)

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)), registry=BASIC)

    assert run.code == 1
    found = results(run)
    assert found[("contosobasic", "registry-sku")] == ("fail", "Basic: connected registries need Premium")
    assert found[("contosobasic", "data-endpoint")][0] == "fail"
    result, detail = found[("plant-01", "connected-registry")]
    assert result == "fail" and "belongs to another registry" in detail


def test_preflight_fails_a_registry_without_a_data_endpoint(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve(arm, "registry-no-data-endpoint.json")
    empty_fleet(arm, LEGACY)

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path)), registry=LEGACY)

    assert run.code == 1
    found = results(run)
    assert found[("contosolegacy", "registry-sku")][0] == "ok"
    assert found[("contosolegacy", "data-endpoint")][0] == "fail"
    assert found[("contosolegacy", "sites")] == ("warn", "no sites configured: nothing else to check")


def test_preflight_warns_about_an_over_broad_scope_map(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    def read_only(body: dict[str, Any]) -> None:
        body["properties"]["mode"] = "ReadOnly"

    serve_fleet(arm, {"line-07": read_only})

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, LINE_07)))

    assert run.code == 0, run.out  # a warning is not a failure
    found = results(run)
    assert found[("line-07", "scope")] == ("warn", "over-broad: the scope map grants 1 pattern not approved: *")
    assert found[("line-07", "mode")] == ("ok", "ReadOnly under ReadOnly plant-01")
    assert found[("line-07", "notifications")][0] == "ok"  # *:* covers everything
    assert found[("line-07", "sync-token")] == ("ok", "line-07 enabled")  # passwords without expiry


def test_preflight_fails_repositories_the_scope_map_never_grants(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve_fleet(arm)
    wall_clock_tokens(arm)
    site = {**PLANT_01, "repositories": ["inspection/*", "base/python"]}

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, site)))

    assert run.code == 1
    assert results(run)[("plant-01", "scope")] == (
        "fail",
        "approved but never synced (not in the scope map): inspection/*, base/python",
    )


@pytest.mark.parametrize(
    ("sync_days", "result", "words"),
    [(-3, "fail", "expired"), (12, "warn", "within 30"), (200, "ok", "valid until")],
)
def test_preflight_sync_token_expiry(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path, sync_days: float, result: str, words: str
) -> None:
    serve_fleet(arm)
    wall_clock_tokens(arm, sync_days=sync_days)

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)))

    assert run.code == (1 if result == "fail" else 0)
    found, detail = results(run)[("plant-01", "sync-token")]
    assert found == result and words in detail


def test_preflight_fails_a_disabled_sync_token(arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path) -> None:
    serve_fleet(arm)
    disabled = with_expiries(fixture("token-disabled.json"), datetime.now(UTC) + timedelta(days=200))
    disabled["id"], disabled["name"] = f"{TOKENS}/plant-01", "plant-01"
    arm.put(disabled["id"], disabled)

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)))

    assert run.code == 1
    assert results(run)[("plant-01", "sync-token")] == ("fail", "plant-01 is disabled: the site cannot sync")


@pytest.mark.parametrize(
    ("variant", "result", "words"),
    [
        ("covers-exact", "ok", "raise events"),
        ("all-digests", "ok", "raise events"),
        ("one-tag-only", "warn", "only some pushes"),
        ("delete-only", "fail", "no push events for inspection/camera, inspection/model-runtime"),
        ("other-repositories", "fail", "no push events"),
        ("malformed", "fail", "expected artifact:action"),
        ("empty", "fail", "notificationsList is empty"),
    ],
)
def test_preflight_notifications(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path, variant: str, result: str, words: str
) -> None:
    def notifications(body: dict[str, Any]) -> None:
        body["properties"]["notificationsList"] = NOTIFICATIONS[variant]

    serve_fleet(arm, {"plant-01": notifications})
    wall_clock_tokens(arm)

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)))

    assert run.code == (1 if result == "fail" else 0)
    found, detail = results(run)[("plant-01", "notifications")]
    assert found == result and words in detail


def test_preflight_mode_activation_and_missing_connected_registries(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve_fleet(arm)
    plant04 = {**PLANT_01, "name": "plant-04", "connected_registry": f"{CR}/plant-04"}
    gone = {**PLANT_01, "name": "plant-09", "connected_registry": f"{CR}/plant-09"}
    unmapped = {key: value for key, value in PLANT_01.items() if key != "connected_registry"} | {"name": "plant-10"}

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, LINE_07, plant04, gone, unmapped)))

    assert run.code == 1
    found = results(run)
    result, detail = found[("line-07", "mode")]
    assert result == "fail" and "ReadWrite under the ReadOnly plant-01" in detail
    assert found[("plant-04", "activation")][0] == "fail"
    assert found[("plant-04", "sync-token")] == ("fail", "sync token plant-04 is not in ARM")
    assert found[("plant-09", "connected-registry")] == ("fail", "the registry has no connected registry plant-09")
    assert found[("plant-10", "connected-registry")] == ("fail", "the site names no connected_registry")


@pytest.mark.parametrize(
    ("change", "result", "words"),
    [
        ({"syncWindow": "PT30M"}, "fail", "syncWindow PT30M is outside PT1H to P7D"),
        ({"syncWindow": "P8D"}, "fail", "outside PT1H to P7D"),
        ({"messageTtl": "P120D"}, "fail", "messageTtl P120D is outside P1D to P90D"),
        ({"schedule": "0 22 * *"}, "fail", "not a 5-field cron"),
        ({"schedule": "0 3 * * *"}, "warn", "the site says schedule 0 22 * * * (the sweeper follows ARM)"),
        ({"schedule": "* * * * *", "syncWindow": "PT1M"}, "warn", "continuous"),  # the window is ignored
    ],
)
def test_preflight_sync_settings(
    arm: ArmServer,
    acrsync: Callable[..., Run],
    tmp_path: Path,
    change: dict[str, str],
    result: str,
    words: str,
) -> None:
    def settings(body: dict[str, Any]) -> None:
        body["properties"]["parent"]["syncProperties"].update(change)

    serve_fleet(arm, {"plant-01": settings})
    wall_clock_tokens(arm)

    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)))

    found, detail = results(run)[("plant-01", "sync-settings")]
    assert (found, run.code) == (result, 1 if result == "fail" else 0)
    assert words in detail


def test_preflight_exit_codes(arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path) -> None:
    good_sites = str(sites_file(tmp_path, PLANT_01))
    # A registry that does not exist is a failed check.
    missing = run_preflight(acrsync, arm, "--sites", good_sites)
    assert missing.code == 1 and missing.json()[0]["result"] == "fail"
    # ARM refusing access, or not answering: 4.
    arm.fail(REG, 403)
    refused = run_preflight(acrsync, arm, "--sites", good_sites)
    assert refused.code == 4 and "AuthorizationFailed" in refused.err and refused.out == ""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    down = acrsync("preflight", "--registry", REG, "--arm-endpoint", closed, "--sites", good_sites)
    assert down.code == 4 and "unreachable" in down.err
    # Usage errors: 3.
    assert acrsync("preflight", "--registry", "contosoacr", "--arm-endpoint", arm.base_url).code == 3
    assert acrsync("preflight", "--arm-endpoint", arm.base_url).code == 3  # --registry is required
    plain = acrsync("preflight", "--registry", REG, "--arm-endpoint", "http://arm.example", "--sites", good_sites)
    assert plain.code == 3 and "http:// only on loopback" in plain.err
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites:\n  - name: Plant_01\n")
    bad_file = run_preflight(acrsync, arm, "--sites", str(bad))
    assert bad_file.code == 3 and "bad.yaml: line" in bad_file.err
    assert run_preflight(acrsync, arm, "--sites", str(tmp_path / "absent.yaml")).code == 3
    assert run_preflight(acrsync, arm, "-o", "xml").code == 3


def test_the_cli_reads_arm_with_the_composition_roots_credential(tmp_path: Path) -> None:
    from azure.identity import DefaultAzureCredential

    services = bootstrap(Settings(data_dir=tmp_path))  # what a command builds from the environment
    try:
        with services.open_arm_inventory("https://management.usgovcloudapi.net") as reader:
            assert isinstance(reader._credential, DefaultAzureCredential)
        with pytest.raises(ConfigurationError, match="http:// only on loopback"):
            services.open_arm_inventory("http://arm.example").__enter__()
    finally:
        services.close()


def test_preflight_service_reports_arm_trouble_as_an_exception(
    arm: ArmServer, reader: ArmConnectedRegistryReader
) -> None:
    serve_fleet(arm)
    arm.fail(f"{TOKENS}/plant-01", 429, times=5)
    site = load_sites_file(yaml.safe_dump({"sites": [PLANT_01]})).sites
    with pytest.raises(UpstreamUnavailable, match="HTTP 429"):
        preflight(reader, REG, site, now=NOW, horizon=timedelta(days=30))
    assert preflight(reader, REG, [], now=NOW, horizon=timedelta(days=30))[-1].result is Result.WARN


# -- discovery -------------------------------------------------------------------------------------


def test_sites_discover_writes_a_sites_file_that_loads(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve_fleet(arm)
    target = tmp_path / "discovered.yaml"

    run = acrsync("sites", "discover", "--registry", REG, "--arm-endpoint", arm.base_url, "-o", str(target))

    assert run.code == 0, run.err
    assert "wrote" in run.err and "3 of 4 connected registries as sites" in run.err
    listing = run.out.splitlines()
    assert listing[0].split()[:3] == ["ConnectedRegistry", "Site", "Mode"]
    assert any(line.startswith("plant-04") for line in listing)
    text = target.read_text()
    parsed = load_sites_file(text)
    assert parsed.registry == "contosoacr.azurecr.io"
    sites = {site.name: site for site in parsed.sites}
    assert list(sites) == ["plant-01", "plant-05", "line-07"]
    assert sites["plant-01"].repositories == CAMERA_AND_RUNTIME
    assert sites["plant-01"].connected_registry == f"{CR}/plant-01"
    assert (sites["plant-01"].schedule, sites["plant-01"].sync_window, sites["plant-01"].message_ttl) == (
        "0 22 * * *",
        timedelta(hours=6),
        timedelta(days=7),
    )
    assert (sites["plant-05"].schedule, sites["plant-05"].sync_window) == (None, None)  # continuous
    assert sites["plant-05"].repositories == ("inspection/*", "base/python")
    assert sites["plant-05"].message_ttl == timedelta(days=2)
    assert sites["line-07"].repositories == ("*",)
    assert "# skipped plant-04: sync token plant-04 is not in ARM\n" in text

    again = acrsync("sites", "discover", "--registry", REG, "--arm-endpoint", arm.base_url, "-o", str(target))
    assert again.code == 3 and "--force" in again.err
    forced = acrsync(
        "sites", "discover", "--registry", REG, "--arm-endpoint", arm.base_url, "-o", str(target), "--force"
    )
    assert forced.code == 0


def test_sites_discover_to_stdout_with_a_json_listing(arm: ArmServer, acrsync: Callable[..., Run]) -> None:
    serve_fleet(arm)

    run = acrsync("sites", "discover", "--registry", REG, "--arm-endpoint", arm.base_url, "--format", "json")

    assert run.code == 0, run.err
    assert [site.name for site in load_sites_file(run.out).sites] == ["plant-01", "plant-05", "line-07"]
    listing = json.loads(run.err)
    assert [row["connected_registry"] for row in listing] == ["plant-01", "plant-04", "plant-05", "line-07"]
    assert listing[3]["repositories"] == ["*"] and listing[1]["site"] is None

    assert acrsync("sites", "discover", "--registry", LEGACY, "--arm-endpoint", arm.base_url).code == 1
    assert acrsync("sites", "discover", "--registry", "nope", "--arm-endpoint", arm.base_url).code == 3
    arm.fail(REG, 503, times=5)
    assert acrsync("sites", "discover", "--registry", REG, "--arm-endpoint", arm.base_url).code == 4


def test_sites_discover_learns_each_sites_arc_cluster_by_the_name_of_its_extension_or_cluster(
    arm: ArmServer, acrsync: Callable[..., Run]
) -> None:
    serve_fleet(arm)  # plant-01's cluster is named plant-01 (its extension "cr")
    group = f"/subscriptions/{SUB}/resourceGroups/rg-plants"
    line = f"{group}/providers/Microsoft.Kubernetes/connectedClusters/edge-line-7"
    serve_cluster(arm, line, extension_name="line-07")  # another name; its extension says which registry
    bare = f"{group}/providers/Microsoft.Kubernetes/connectedClusters/plant-05"
    serve_cluster(arm, bare, extension=None)  # named like plant-05, but runs no connected registry
    arm.put_page(
        f"{group}/providers/Microsoft.Kubernetes/connectedClusters",
        {
            "value": [
                {
                    "id": c,
                    "name": c.rsplit("/", 1)[-1],
                    "location": "westeurope",
                    "identity": {"type": "SystemAssigned"},
                    "properties": {"agentPublicKeyCertificate": ""},
                }
                for c in (CLUSTER_01, line, bare)
            ]
        },
    )
    run = acrsync("sites", "discover", "--registry", REG, "--arm-endpoint", arm.base_url, "--clusters", group)
    assert run.code == 0, run.err
    sites = {site.name: site for site in load_sites_file(run.out).sites}
    assert sites["plant-01"].cluster_id == CLUSTER_01 and sites["line-07"].cluster_id == line
    assert sites["plant-05"].cluster_id is None
    assert "# plant-01: cluster_id matched by name (plant-01): ARM does not link the two, check it" in run.out
    assert "# plant-05: no Arc cluster with a connected registry extension named like it" in run.out
    missing = acrsync(
        "sites", "discover", "--registry", REG, "--arm-endpoint", arm.base_url, "--clusters", f"{group}-gone"
    )
    assert missing.code == 1 and "no resource group" in missing.err


def test_discovery_keeps_the_draft_loadable(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    def odd(body: dict[str, Any]) -> None:
        body["name"] = "Line_08"
        body["id"] = f"{CR}/Line_08"
        sync = body["properties"]["parent"]["syncProperties"]
        sync["syncWindow"], sync["messageTtl"] = "PT20M", "P120D"

    def unnamed(body: dict[str, Any]) -> None:
        body["name"] = "plant-01"  # a second plant-01 (after lower-casing) cannot be a second site

    serve_fleet(arm, {"line-07": odd, "plant-05": unnamed})

    found = discover(reader, REG)
    text = discovery_yaml(found, registry_id=REG, generated_at=NOW)

    sites = {site.name: site for site in load_sites_file(text).sites}
    assert list(sites) == ["plant-01", "line-08"]
    assert sites["line-08"].sync_window == timedelta(hours=1) and sites["line-08"].message_ttl == timedelta(days=90)
    assert "line-08: syncWindow PT20M is outside PT1H to P7D: PT1H used" in text
    assert "# skipped plant-01: another connected registry already became site plant-01" in text
    assert copy.deepcopy(found.registry).login_server == "contosoacr.azurecr.io"


def test_preflight_names_a_missing_scope_map(arm: ArmServer, reader: ArmConnectedRegistryReader) -> None:
    serve_fleet(arm)
    arm.remove(f"{REG}/scopeMaps/plant-01")
    sites = load_sites_file(yaml.safe_dump({"sites": [PLANT_01]})).sites

    checks = {check.check: check for check in preflight(reader, REG, sites, now=NOW, horizon=timedelta(days=30))}

    assert checks["scope"].result is Result.FAIL
    assert checks["scope"].detail == "the scope map of sync token plant-01 is not in ARM"


def test_token_checks_work_on_the_simulated_dev_sites(tmp_path: Path) -> None:
    from shared.local.simulated import SimulatedConnectedRegistries, simulated_resource_id

    site = Site(name="plant-01", repositories=("inspection/*",), connected_registry=simulated_resource_id("plant-01"))
    simulated = SimulatedConnectedRegistries(lambda: [site], lambda: NOW)

    report = governance.read_site_tokens(simulated, site, NOW, timedelta(days=30))

    assert report is not None
    [token] = report.tokens
    assert (token.name, token.role.value, token.state.value, token.status) == ("plant-01", "sync", "ok", "enabled")


# -- managed-identity sync (preview API 2026-09-01-preview) ------------------------------------


def serve_managed_identity(arm: ArmServer) -> None:
    """plant-01 syncing with its managed identity: no tokenId, authType, registrySyncResult, and a
    statusDetails entry with the newer disk fields."""
    body = fixture("connected-registry-managed-identity.json")
    body.update(id=f"{CR}/plant-01", name="plant-01")  # the fixture is plant-08; here it is plant-01 switched to it
    serve_fleet(arm, {"plant-01": lambda listed: listed.update(body)})
    arm.put(body["id"], body)
    serve(arm, "token-client-expiring.json", "connected-registry-continuous.json")


def test_the_reader_takes_the_managed_identity_mode_and_the_sync_result_from_newer_fields(
    arm: ArmServer, reader: ArmConnectedRegistryReader
) -> None:
    from shared.domain.observations import SyncAuth

    serve_managed_identity(arm)
    state = reader.get_connected_registry(f"{CR}/plant-01")
    assert state.sync_auth is SyncAuth.MANAGED_IDENTITY and state.syncs_with_identity
    assert state.token_id is None
    assert state.sync_result is not None
    assert (state.sync_result.state, state.sync_result.trigger) == ("Succeeded", "InitialSync")
    assert state.sync_result.last_successful_end == datetime(2026, 11, 24, 22, 3, 41, tzinfo=UTC)
    assert [d.type for d in state.status_details][-1] == "Sync"  # newer detail fields are tolerated
    assert state.evidence_details()["syncAuth"] == "ManagedIdentity"
    legacy = reader.get_connected_registry(fixture("connected-registry-continuous.json")["id"])
    # no authType: a sync token by definition
    assert legacy.sync_auth is SyncAuth.SYNC_TOKEN and legacy.sync_result is None


def test_preflight_says_token_and_scope_checks_do_not_apply_to_managed_identity_sync(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve_managed_identity(arm)
    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)))
    assert run.code == 0, run.err
    found = results(run)
    assert found[("plant-01", "sync-token")][0] == "ok" and "not applicable" in found[("plant-01", "sync-token")][1]
    assert found[("plant-01", "scope")][0] == "ok" and "not applicable" in found[("plant-01", "scope")][1]


def test_drift_is_not_applicable_and_only_client_tokens_are_judged(arm: ArmServer, wire: Wire) -> None:
    serve_managed_identity(arm)
    services = wire(sites=TOKEN_SITES[:1])
    drift = TestClient(asgi_app).get("/api/sites/plant-01/drift").json()
    assert (drift["status"], drift["token_id"], drift["missing"]) == ("not-applicable", None, [])
    assert "managed identity" in drift["reason"]
    report = governance.read_site_tokens(services.arm, TOKEN_SITES[0], NOW, timedelta(days=30))
    assert report is not None
    assert [(t.name, t.role.value) for t in report.tokens] == [("plant-01-client", "client")]
    assert all(t.state.value not in {"missing", "unknown"} for t in report.tokens)


def test_preflight_fails_an_offline_cluster_a_missing_extension_and_warns_of_a_blind_site(
    arm: ArmServer, acrsync: Callable[..., Run], tmp_path: Path
) -> None:
    serve_fleet(arm)
    wall_clock_tokens(arm)
    serve_cluster(arm, CLUSTER_01, connectivity="Offline", extension=None)
    blind = {**PLANT_01}
    blind.pop("cluster_id")
    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, PLANT_01)))
    assert run.code == 1
    health = {
        (c["check"], c["result"]): c["detail"]
        for c in run.json()
        if c["check"] in {"arc-cluster", "registry-extension"}
    }
    assert health == {
        ("arc-cluster", "fail"): "Offline: the cluster does not reach Azure",
        ("registry-extension", "fail"): "no Microsoft.ContainerRegistry.ConnectedRegistry extension on the cluster",
    }
    run = run_preflight(acrsync, arm, "--sites", str(sites_file(tmp_path, blind)))
    [visibility] = [c for c in run.json() if c["check"] == "visibility"]
    assert visibility["result"] == "warn" and "cannot see what runs there" in visibility["detail"]
