"""The status API over HTTP: every route against the SQLite adapters, with data set up through the
services (ingest, then row moves), plus problem shapes, ETags, paging, CSV, retry and the auth matrix."""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from shared.adapters.outbox import SqliteOutbox
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.messages import JobKind, SiteSyncJob
from shared.domain.model import Site
from shared.domain.observations import ConnectedRegistryState, ConnectionState, OutboundEvent, OutboundEventType
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.errors import ConfigurationError
from shared.services.ingest import ingest_delivery
from tests.builders import move_row, push_release, random_digest
from tests.fakes import CountingSink, FakeArmReader, FakeClock, delivery, load_event

asgi_app = create_app()

NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
PUSHED = datetime(2026, 11, 24, 9, 41, 12, tzinfo=UTC)
KEY = "test-api-key-0123456789"
CR_ID = (
    "/subscriptions/6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43/resourceGroups/rg/providers/"
    "Microsoft.ContainerRegistry/registries/contosoacr/connectedRegistries/plant02"
)
SITES = [
    Site(name="plant-01", ring="canary", critical=True, owner="ops@contoso.example", repositories=("inspection/*",)),
    Site(name="plant-02", ring="canary", repositories=("inspection/*",), connected_registry=CR_ID),
    Site(
        name="plant-03",
        ring="prod",
        repositories=("inspection/*",),
        schedule="0 22 * * *",
        sync_window=timedelta(hours=3),
    ),
    Site(name="store-01", ring="prod", repositories=("retail/*",)),  # out of scope for inspection/*
]


def online(resource_id: str) -> ConnectedRegistryState:
    """ARM as the sites read it: every connected registry online (sync scopes unavailable)."""
    return ConnectedRegistryState(
        resource_id=resource_id, name="plant02", connection_state=ConnectionState.ONLINE, observed_at=NOW
    )


Wire = Callable[..., Services]


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    """Build and install services on one SQLite file; settings and sinks vary per test."""
    built: list[Services] = []

    def make(settings: Settings | None = None, *, events: Any = None, arm: Any = None) -> Services:
        store = SqliteStateStore(tmp_path / "s.db")
        if not built:
            store.upsert_sites(SITES)
        services = bootstrap(
            replace(settings or Settings(), data_dir=tmp_path),
            store=store,
            queue=SqliteJobQueue(tmp_path / "s.db", clock=lambda: NOW),
            clock=FakeClock(NOW),
            arm=arm or FakeArmReader(online),
            events=events if events is not None else SqliteOutbox(tmp_path / "s.db"),
        )
        use_services(services)
        built.append(services)
        return services

    yield make
    use_services(None)
    for services in built:
        services.close()


@pytest.fixture
def services(wire: Wire) -> Services:
    return wire()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(asgi_app)


@pytest.fixture
def release_id(services: Services) -> str:
    return push(services)


def push(
    services: Services,
    repository: str = "inspection/camera",
    tag: str = "1.4.2",
    *,
    digest: str = "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560",
    at: datetime = PUSHED,
) -> str:
    """Push an image the way Event Grid delivers it; returns the release id."""
    return push_release(services, repository, tag, digest=digest, at=at)


def move(services: Services, release_id: str, site: str, state: SyncState, reason: SyncReason) -> None:
    move_row(services, release_id, site, state, reason, at=NOW)


def row_state(services: Services, release_id: str, site: str) -> SyncState:
    return services.store.get_site_sync(release_id, site).value.state


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-ms-error-code"] == code
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    return body


def principal(*roles: str, name: str = "ci@contoso.example", role_type: str = "roles") -> str:
    claims = [{"typ": role_type, "val": role} for role in roles] + [{"typ": "name", "val": name}]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


# -- sites ------------------------------------------------------------------------------------


def test_sites_are_listed_by_name_with_their_next_window(client: TestClient) -> None:
    response = client.get("/api/sites")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-cache"
    sites = response.json()["value"]
    assert [s["name"] for s in sites] == ["plant-01", "plant-02", "plant-03", "store-01"]
    plant03 = sites[2]
    assert plant03 == {
        "name": "plant-03",
        "ring": "prod",
        "critical": False,
        "owner": None,
        "repositories": ["inspection/*"],
        "tags": {"include": [], "exclude": [], "semver_only": False},
        "schedule": "0 22 * * *",
        "sync_window": "PT3H",
        "message_ttl": "P2D",
        "connected_registry": None,
        "endpoint": None,
        "stale_after_windows": 2,
        "next_window": {"opens_at": "2026-11-24T22:00:00+00:00", "closes_at": "2026-11-25T01:00:00+00:00"},
        "connection_state": None,
        "tokens": None,  # what the sweeper last found (shared.services.governance); none swept here
        "cluster_id": None,
        "log_analytics_workspace_id": None,
        "reporter": False,
        "link": None,
    }
    assert all(s["connection_state"] is None for s in sites)  # the list never asks ARM


def test_a_site_shows_its_connection_state_and_latest_release_per_repository(
    client: TestClient, services: Services, release_id: str
) -> None:
    move(services, release_id, "plant-02", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    site = client.get("/api/sites/plant-02").json()
    assert site["connection_state"] == "Online" and site["connected_registry"] == CR_ID
    [state] = site["repositories_state"]
    assert state["repository"] == "inspection/camera" and state["release_id"] == release_id
    assert state["state"] == "VERIFIED" and state["tags"] == ["1.4.2"] and state["verified_at"] == NOW.isoformat()
    assert state["digest"].startswith("sha256:") and state["pushed_at"] == PUSHED.isoformat()

    newer = push(services, tag="1.5.0", digest=random_digest(), at=PUSHED + timedelta(hours=1))
    move(services, newer, "plant-02", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    [state] = client.get("/api/sites/plant-02").json()["repositories_state"]
    assert (state["release_id"], state["state"], state["reason"]) == (newer, "FAILED", "SYNC_TOKEN_EXPIRED")


def test_a_site_without_a_connected_registry_has_no_connection_state(client: TestClient) -> None:
    site = client.get("/api/sites/plant-01").json()
    assert site["connection_state"] is None and site["repositories_state"] == []


def test_arm_trouble_makes_the_connection_state_unknown_not_an_error(wire: Wire) -> None:
    wire(arm=FakeArmReader(online, unavailable=lambda resource_id: True))
    response = TestClient(asgi_app).get("/api/sites/plant-02")
    assert response.status_code == 200 and response.json()["connection_state"] == "Unknown"


def test_site_problems(client: TestClient) -> None:
    assert_problem(client.get("/api/sites/plant-99"), 404, "SITE_NOT_FOUND")
    assert_problem(client.get("/api/sites/Plant_01"), 400, "INVALID_SITE_NAME")
    assert_problem(client.get("/api/sites?top=5"), 400, "UNKNOWN_QUERY_PARAMETER")


# -- releases ---------------------------------------------------------------------------------


def test_a_release_shows_every_site_row(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    release = client.get(f"/api/releases/{release_id}").json()
    digest = "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560"
    header = {k: v for k, v in release.items() if k != "sites"}
    assert header == {
        "id": release_id,
        "registry": "contosoacr.azurecr.io",
        "repository": "inspection/camera",
        "digest": digest,
        "image": f"contosoacr.azurecr.io/inspection/camera@{digest}",
        "tags": ["1.4.2"],
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": 1574,
        "kind": "IMAGE",
        "pushed_at": PUSHED.isoformat(),
        "actor": None,
        "withdrawn_at": None,
        "counts": {"PENDING": 1, "SKIPPED": 1, "VERIFIED": 1, "WAITING_FOR_WINDOW": 1},
        "counts_as_of": NOW.isoformat(),  # counted from the rows shown: as of the newest change among them
        "size_bytes": None,  # not weighed: no summary has run yet
        "layers": None,
        "platforms": None,
        "size_unknown_reason": None,
        "image_annotations": None,
        "annotations": {
            **dict.fromkeys(("owner", "approval_url", "change_record", "rollback_condition", "note")),
            **{"set_by": None, "set_at": None},
        },
        "adoption": {"holding": 1, "running": 0, "ran": 0},  # nothing was seen running anywhere yet
        "annotation_history": [],
    }
    sites = {s["site"]: s for s in release["sites"]}
    assert list(sites) == ["plant-01", "plant-02", "plant-03", "store-01"]
    assert sites["plant-01"] == {
        "site": "plant-01",
        "ring": "canary",
        "critical": True,
        "state": "VERIFIED",
        "reason": "MANIFEST_PRESENT",
        "expected_ready_at": "2026-11-24T09:43:00+00:00",
        "synced_at": NOW.isoformat(),
        "verified_at": NOW.isoformat(),
        "stale_at": None,
        "updated_at": NOW.isoformat(),
        "evidence_source": "schedule",
        "next_check_at": NOW.isoformat(),
        "running_pods": 0,
        "running_since": None,
        "offline_since": None,
        "bytes_needed": None,  # the release is not weighed yet
        "link": None,
    }
    assert sites["plant-03"]["state"] == "WAITING_FOR_WINDOW" and sites["plant-03"]["reason"] == "WINDOW_CLOSED"
    assert sites["store-01"]["state"] == "SKIPPED" and sites["store-01"]["reason"] == "REPO_NOT_IN_SCOPE"


def test_a_row_of_a_deleted_site_still_shows_without_a_ring(wire: Wire, tmp_path: Path) -> None:
    first = wire()
    release_id = push(first)
    first.store.delete_site("plant-02")
    wire()  # a fresh process: the site catalog is read again
    sites = {s["site"]: s for s in TestClient(asgi_app).get(f"/api/releases/{release_id}").json()["sites"]}
    assert sites["plant-02"]["ring"] is None and sites["plant-02"]["critical"] is None
    assert sites["plant-02"]["state"] == "PENDING"


def test_release_problems(client: TestClient, release_id: str) -> None:
    assert_problem(client.get("/api/releases/" + "0" * 32), 404, "RELEASE_NOT_FOUND")
    for bad in ("XYZ", "0" * 31, "0" * 33, "A" * 32):
        assert_problem(client.get(f"/api/releases/{bad}"), 400, "INVALID_RELEASE_ID")
    assert_problem(client.get(f"/api/releases/{release_id}?expand=sites"), 400, "UNKNOWN_QUERY_PARAMETER")


def test_releases_page_newest_first_with_next_links(client: TestClient, services: Services) -> None:
    ids = [push(services, tag=f"1.{i}.0", digest=random_digest(), at=PUSHED + timedelta(minutes=i)) for i in range(5)]
    push(services, repository="retail/pos-api", tag="2.0.0", digest=random_digest(), at=PUSHED)
    seen: list[str] = []
    url: str | None = "/api/releases?repository=inspection/camera&top=2"
    pages = 0
    while url is not None:
        body = client.get(url).json()
        seen.extend(release["id"] for release in body["value"])
        url = body.get("nextLink")
        pages += 1
        if url is not None:
            parts = urlsplit(url)
            assert parts.scheme == "http" and parts.netloc == "testserver"
            query = parse_qs(parts.query)
            assert query["repository"] == ["inspection/camera"] and query["top"] == ["2"] and query["continuation"]
    assert seen == list(reversed(ids)) and pages == 3
    assert "nextLink" not in client.get("/api/releases?top=200").json()  # omitted, never null


def test_releases_filter_by_tag_and_digest(client: TestClient, services: Services, release_id: str) -> None:
    other = push(services, tag="2.0.0", digest=random_digest())
    assert [r["id"] for r in client.get("/api/releases?tag=2.0.0").json()["value"]] == [other]
    digest = services.store.get_release(release_id).value.digest
    assert [r["id"] for r in client.get(f"/api/releases?digest={digest}").json()["value"]] == [release_id]
    assert client.get("/api/releases?repository=retail/pos-api").json() == {"value": []}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("top=0", "INVALID_TOP"),
        ("top=201", "INVALID_TOP"),
        ("top=ten", "INVALID_TOP"),
        ("continuation=not-a-token", "INVALID_CONTINUATION"),
        ("repository=Inspection//Camera", "INVALID_REPOSITORY"),
        ("tag=no%20spaces", "INVALID_TAG"),
        ("digest=sha256:abc", "INVALID_DIGEST"),
        ("top=1&top=2", "DUPLICATE_QUERY_PARAMETER"),
        ("orderby=name", "UNKNOWN_QUERY_PARAMETER"),
    ],
)
def test_release_listing_problems(client: TestClient, release_id: str, query: str, code: str) -> None:
    assert_problem(client.get(f"/api/releases?{query}"), 400, code)


def test_a_continuation_only_works_with_the_filters_it_was_issued_for(client: TestClient, services: Services) -> None:
    for i in range(3):
        push(services, tag=f"1.{i}.0", digest=random_digest(), at=PUSHED + timedelta(minutes=i))
    token = parse_qs(urlsplit(client.get("/api/releases?top=1").json()["nextLink"]).query)["continuation"][0]
    assert client.get(f"/api/releases?top=1&continuation={token}").status_code == 200
    assert_problem(client.get(f"/api/releases?tag=1.0.0&continuation={token}"), 400, "INVALID_CONTINUATION")


# -- ETags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/readiness", "/evidence", "/evidence?format=csv"])
def test_reads_revalidate_with_etags(client: TestClient, services: Services, release_id: str, path: str) -> None:
    url = f"/api/releases/{release_id}{path}"
    first = client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")  # strong
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == first.status_code
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code in (200, 202) and changed.headers["etag"] != etag


def test_sites_carry_etags_too(client: TestClient) -> None:
    etag = client.get("/api/sites").headers["etag"]
    assert client.get("/api/sites", headers={"If-None-Match": etag}).status_code == 304
    etag = client.get("/api/sites/plant-01").headers["etag"]
    assert client.get("/api/sites/plant-01", headers={"If-None-Match": "*"}).status_code == 304
    assert client.get("/api/sites/plant-01", headers={"If-None-Match": etag}).status_code == 304


# -- readiness --------------------------------------------------------------------------------


def test_a_pending_gate_answers_202_with_a_computed_retry_after(client: TestClient, release_id: str) -> None:
    url = f"/api/releases/{release_id}/readiness"
    response = client.get(url)
    assert response.status_code == 202
    # plant-01 and plant-02 sync continuously: expected when the current minute's window closes.
    assert response.headers["retry-after"] == "60"
    assert response.headers["location"] == f"http://testserver{url}"
    body = response.json()
    assert (body["state"], body["ready"], body["total"], body["required"]) == ("pending", 0, 3, 3)
    assert body["release_id"] == release_id and body["min_ready"] == 1.0 and body["blocked"] == []
    assert body["reasons"] == [] and body["selection"] == {"kind": "all", "sites": None, "ring": None}
    assert [p["site"] for p in body["pending"]] == ["plant-01", "plant-02", "plant-03"]
    assert body["pending"][2] == {
        "site": "plant-03",
        "state": "WAITING_FOR_WINDOW",
        "reason": "WINDOW_CLOSED",
        "critical": False,
        "expected_ready_at": "2026-11-25T01:00:00+00:00",
        "next_check_at": "2026-11-24T22:05:00+00:00",
        "offline_since": None,
    }


def test_retry_after_follows_the_window_of_what_is_still_pending(
    client: TestClient, services: Services, release_id: str
) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    move(services, release_id, "plant-02", SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH)
    response = client.get(f"/api/releases/{release_id}/readiness")
    # plant-03 waits for its 22:00 window; its first check (22:05) is 12 h 23 min away: clamped to an hour.
    assert response.status_code == 202 and response.headers["retry-after"] == "3600"
    ring = client.get(f"/api/releases/{release_id}/readiness?ring=canary")
    assert ring.status_code == 200 and ring.json()["state"] == "ready" and "retry-after" not in ring.headers


def test_a_ready_gate(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    move(services, release_id, "plant-02", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    response = client.get(f"/api/releases/{release_id}/readiness?min_ready=0.6")
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["ready"], body["total"], body["required"]) == ("ready", 2, 3, 2)
    assert [p["site"] for p in body["pending"]] == ["plant-03"] and body["reasons"] == []


def test_a_failed_gate_says_why(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-01", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    body = client.get(f"/api/releases/{release_id}/readiness?min_ready=0.5").json()
    assert body["state"] == "failed"
    assert body["reasons"] == [{"code": "CRITICAL_SITE_BLOCKED", "sites": ["plant-01"]}]
    assert body["blocked"] == [
        {"site": "plant-01", "state": "FAILED", "reason": "SYNC_TOKEN_EXPIRED", "critical": True}
    ]
    relaxed = client.get(f"/api/releases/{release_id}/readiness?min_ready=0.5&require_all_critical=false")
    assert relaxed.status_code == 202 and relaxed.json()["state"] == "pending"


def test_explicit_sites_count_out_of_scope_picks_as_blocked(client: TestClient, release_id: str) -> None:
    response = client.get(f"/api/releases/{release_id}/readiness?sites=plant-01,store-01")
    body = response.json()
    assert response.status_code == 200 and body["state"] == "failed" and body["total"] == 2
    assert body["selection"] == {"kind": "sites", "sites": ["plant-01", "store-01"], "ring": None}
    assert body["blocked"] == [
        {"site": "store-01", "state": "SKIPPED", "reason": "SITE_OUT_OF_SCOPE", "critical": False}
    ]
    assert body["reasons"] == [{"code": "TOO_MANY_BLOCKED", "sites": ["store-01"]}]


def test_a_withdrawn_release_fails_the_gate(client: TestClient, services: Services, release_id: str) -> None:
    deleted = copy.deepcopy(load_event("eventgrid-image-deleted"))
    release = services.store.get_release(release_id).value
    deleted["data"]["target"].update(repository=release.repository, digest=release.digest)
    deleted["subject"] = release.repository
    ingest_delivery(services, delivery(deleted), "application/json")
    body = client.get(f"/api/releases/{release_id}/readiness").json()
    assert body["state"] == "failed" and body["reasons"][0]["code"] == "RELEASE_WITHDRAWN"
    assert client.get(f"/api/releases/{release_id}").json()["withdrawn_at"] is not None


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("sites=plant-01,ghost", "UNKNOWN_SITE"),
        ("sites=plant-01,,plant-02", "INVALID_SITE_LIST"),
        ("sites=Plant_01", "INVALID_SITE_NAME"),
        ("sites=", "INVALID_SITE_LIST"),
        ("ring=nowhere", "UNKNOWN_RING"),
        ("sites=plant-01&ring=canary", "CONFLICTING_SELECTION"),
        ("min_ready=0", "INVALID_MIN_READY"),
        ("min_ready=1.5", "INVALID_MIN_READY"),
        ("min_ready=nan", "INVALID_MIN_READY"),
        ("min_ready=most", "INVALID_MIN_READY"),
        ("require_all_critical=maybe", "INVALID_REQUEST"),
        ("site=plant-01", "UNKNOWN_QUERY_PARAMETER"),
    ],
)
def test_readiness_problems(client: TestClient, release_id: str, query: str, code: str) -> None:
    assert_problem(client.get(f"/api/releases/{release_id}/readiness?{query}"), 400, code)


def test_readiness_of_an_unknown_release(client: TestClient) -> None:
    assert_problem(client.get(f"/api/releases/{'ab' * 16}/readiness"), 404, "RELEASE_NOT_FOUND")


# -- evidence ---------------------------------------------------------------------------------


def test_evidence_as_json_oldest_first(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-02", SyncState.STALE, SyncReason.WINDOW_MISSED)
    services.clock.advance(minutes=5)  # type: ignore[attr-defined]
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    body = client.get(f"/api/releases/{release_id}/evidence").json()
    assert body["release_id"] == release_id
    assert [(e["site"], e["state_to"]) for e in body["value"]] == [("plant-02", "STALE"), ("plant-01", "VERIFIED")]
    first = body["value"][0]
    assert set(first) == {
        "id",
        "release_id",
        "site",
        "observed_at",
        "recorded_at",
        "source",
        "state_from",
        "state_to",
        "reason",
        "observed_digest",
        "summary",
        "details",
    }
    assert (first["state_from"], first["reason"], first["source"]) == ("PENDING", "WINDOW_MISSED", "schedule")
    only = client.get(f"/api/releases/{release_id}/evidence?site=plant-01").json()["value"]
    assert [e["site"] for e in only] == ["plant-01"]
    assert client.get(f"/api/releases/{release_id}/evidence?site=plant-03").json()["value"] == []


def test_evidence_as_csv(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    response = client.get(f"/api/releases/{release_id}/evidence?format=csv&site=plant-01")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="acrsync-evidence-{release_id}-plant-01.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "release_id",
        "site",
        "observed_at",
        "recorded_at",
        "source",
        "state_from",
        "state_to",
        "reason",
        "observed_digest",
        "summary",
        "details",
    ]
    [record] = rows[1:]
    assert record[:9] == [
        release_id,
        "plant-01",
        NOW.isoformat(),
        NOW.isoformat(),
        "schedule",
        "PENDING",
        "VERIFIED",
        "MANIFEST_PRESENT",
        "",
    ]
    assert json.loads(record[10]) == {}


def test_evidence_problems(client: TestClient, release_id: str) -> None:
    url = f"/api/releases/{release_id}/evidence"
    assert_problem(client.get(f"{url}?site=plant-99"), 404, "SITE_NOT_FOUND")
    assert_problem(client.get(f"{url}?site=Plant"), 400, "INVALID_SITE_NAME")
    assert_problem(client.get(f"{url}?format=xml"), 400, "INVALID_REQUEST")
    assert_problem(client.get(f"/api/releases/{'0' * 32}/evidence"), 404, "RELEASE_NOT_FOUND")


# -- retry ------------------------------------------------------------------------------------


def retry_jobs(services: Services) -> list[SiteSyncJob]:
    """Drain the visible jobs (one per site session at a time) and keep the operator's retries."""
    jobs: list[SiteSyncJob] = []
    while received := services.queue.receive_messages(max_count=100):
        for message in received:
            jobs.append(SiteSyncJob.decode(message.body))
            services.queue.complete_message(message)
    return [job for job in jobs if job.kind is JobKind.RETRY]


def test_retry_failed_moves_failed_rows_back_with_operator_evidence(
    wire: Wire, services: Services, release_id: str
) -> None:
    move(services, release_id, "plant-01", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    move(services, release_id, "plant-02", SyncState.STALE, SyncReason.SITE_SILENT)
    secured = wire(Settings(require_roles=True, app_service_auth=True))
    response = TestClient(asgi_app).post(
        f"/api/releases/{release_id}/retry?sites=failed",
        headers={"X-MS-CLIENT-PRINCIPAL": principal("Sync.Operate"), "Repeatability-Request-ID": "req-1"},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {
        "release_id": release_id,
        "requested": ["plant-01"],
        "enqueued": ["plant-01"],
        "skipped": [],
    }
    assert response.headers["location"] == f"http://testserver/api/releases/{release_id}"
    assert response.headers["repeatability-result"] == "accepted"
    row = secured.store.get_site_sync(release_id, "plant-01").value
    assert (row.state, row.reason, row.evidence_source) == (
        SyncState.PENDING,
        SyncReason.OPERATOR_RETRY,
        EvidenceSource.OPERATOR,
    )
    assert row.next_check_at == NOW and row.expected_ready_at == datetime(2026, 11, 24, 9, 43, tzinfo=UTC)
    assert row_state(secured, release_id, "plant-02") is SyncState.STALE  # not asked for
    [evidence] = [
        e for e in secured.store.list_evidence(release_id, site="plant-01") if e.state_to is SyncState.PENDING
    ]
    assert evidence.source is EvidenceSource.OPERATOR and evidence.state_from is SyncState.FAILED
    assert evidence.details == {"requested_by": "ci@contoso.example", "request_id": "req-1"}
    assert retry_jobs(secured) == [SiteSyncJob(release_id, "plant-01", JobKind.RETRY, check=row.checks)]


def test_retry_stale_and_named_sites(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-02", SyncState.STALE, SyncReason.WINDOW_MISSED)
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    response = client.post(f"/api/releases/{release_id}/retry?sites=stale,plant-03,plant-01,store-01")
    assert response.status_code == 202
    assert response.json() == {
        "release_id": release_id,
        "requested": ["plant-02", "plant-03", "plant-01", "store-01"],
        "enqueued": ["plant-02", "plant-03"],  # a stale row reopened, a waiting row checked now
        "skipped": [
            {"site": "plant-01", "state": "VERIFIED", "reason": None},
            {"site": "store-01", "state": "SKIPPED", "reason": None},
        ],
    }
    assert row_state(services, release_id, "plant-02") is SyncState.PENDING
    assert row_state(services, release_id, "plant-03") is SyncState.WAITING_FOR_WINDOW  # only a new job
    assert {job.site for job in retry_jobs(services)} == {"plant-02", "plant-03"}


def test_retrying_twice_sends_one_job(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-01", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    url = f"/api/releases/{release_id}/retry?sites=plant-01"
    assert client.post(url).json()["enqueued"] == ["plant-01"]
    assert client.post(url).json()["enqueued"] == ["plant-01"]  # still waiting: asked again, deduplicated
    assert len(retry_jobs(services)) == 1
    operator = [e for e in services.store.list_evidence(release_id) if e.source is EvidenceSource.OPERATOR]
    assert len(operator) == 1


def test_retry_of_a_failed_gate_reopens_it(client: TestClient, services: Services, release_id: str) -> None:
    move(services, release_id, "plant-01", SyncState.FAILED, SyncReason.TRANSFER_FAILED)
    url = f"/api/releases/{release_id}/readiness"
    assert client.get(url).json()["state"] == "failed"
    client.post(f"/api/releases/{release_id}/retry?sites=failed")
    assert client.get(url).json()["state"] == "pending"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("sites=ghost", 400, "UNKNOWN_SITE"),
        ("sites=", 400, "INVALID_SITE_LIST"),
        ("sites=Bad_Name", 400, "INVALID_SITE_NAME"),
        ("", 400, "INVALID_SITE_LIST"),
        ("sites=failed&dry_run=true", 400, "UNKNOWN_QUERY_PARAMETER"),
    ],
)
def test_retry_problems(client: TestClient, release_id: str, query: str, status: int, code: str) -> None:
    assert_problem(client.post(f"/api/releases/{release_id}/retry?{query}"), status, code)


def test_retry_of_an_unknown_release(client: TestClient) -> None:
    assert_problem(client.post(f"/api/releases/{'0' * 32}/retry?sites=failed"), 404, "RELEASE_NOT_FOUND")


# -- events -----------------------------------------------------------------------------------


def outbound(n: int) -> OutboundEvent:
    return OutboundEvent(
        event_id=f"ev-{n}",
        type=OutboundEventType.SITE_SYNCED,
        source="/acrsync/contosoacr.azurecr.io/inspection/camera",
        subject="sites/plant-01",
        time=NOW + timedelta(seconds=n),
        data={"n": n},
    )


def test_events_from_the_outbox_page_by_after(client: TestClient, services: Services) -> None:
    services.events.publish([outbound(n) for n in range(5)])
    body = client.get("/api/events?limit=3").json()
    assert [e["id"] for e in body["value"]] == ["ev-0", "ev-1", "ev-2"]
    assert body["value"][0] == {
        "specversion": "1.0",
        "id": "ev-0",
        "type": "acrsync.site.synced",
        "source": "/acrsync/contosoacr.azurecr.io/inspection/camera",
        "subject": "sites/plant-01",
        "time": NOW.isoformat(),
        "data": {"n": 0},
    }
    rest = client.get(body["nextLink"]).json()
    assert [e["id"] for e in rest["value"]] == ["ev-3", "ev-4"] and "nextLink" not in rest
    assert client.get("/api/events?after=ev-4").json() == {"value": []}
    assert_problem(client.get("/api/events?after=nope"), 400, "INVALID_CURSOR")
    assert_problem(client.get("/api/events?limit=0"), 400, "INVALID_LIMIT")


def test_events_are_not_listed_when_they_go_to_event_grid(wire: Wire) -> None:
    wire(events=CountingSink())
    assert_problem(TestClient(asgi_app).get("/api/events"), 404, "OUTBOX_NOT_AVAILABLE")


# -- auth -------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/api/sites"),
    ("GET", "/api/sites/plant-01"),
    ("GET", "/api/releases"),
    ("GET", "/api/releases/{id}"),
    ("GET", "/api/releases/{id}/readiness"),
    ("GET", "/api/releases/{id}/evidence"),
    ("POST", "/api/releases/{id}/retry?sites=failed"),
    ("PATCH", "/api/releases/{id}/annotations"),
    ("GET", "/api/events"),
    ("GET", "/api/sites/plant-01/rollback"),
    ("GET", "/api/sites/plant-01/drift"),
    ("GET", "/api/report"),
    ("GET", "/api/signing-key"),
    ("POST", "/api/sites/plant-01/report-token"),
    ("GET", "/api/running"),
    ("GET", "/api/views/matrix"),
    ("GET", "/api/views/releases/{id}"),
]
# What a route that reads a body is sent by the tests that only look at who may call it.
BODIES: dict[str, Any] = {"/api/releases/{id}/annotations": {"owner": "ops-plant01@contoso.example"}}
OPEN_PATHS = {"/api/healthz", "/api/openapi.json", "/api/docs"}
# A site's reporter presents its site's report token, checked by the route (tests/integration/test_site_reports_api.py).
SITE_TOKEN_PATHS = {"/api/sites/{site}/reports"}


def test_the_auth_matrix_covers_every_api_route(client: TestClient) -> None:
    templates = {
        path.split("?")[0].replace("{id}", "{release_id}").replace("plant-01", "{site}") for _, path in PROTECTED
    }
    documented = {p for p in client.get("/api/openapi.json").json()["paths"] if p.startswith("/api/")}
    # /api/dev/... exists only when `acrsync dev` (or a test of it) mounts it on the shared app.
    assert {p for p in documented - OPEN_PATHS - SITE_TOKEN_PATHS if not p.startswith("/api/dev/")} == templates


def test_auth_settings_are_read_strictly_and_the_key_is_never_shown() -> None:
    settings = Settings.from_environ({"ACRSYNC_API_KEY": KEY, "ACRSYNC_REQUIRE_ROLES": "yes"})
    assert settings.api_key == KEY and settings.require_roles is True
    assert KEY not in repr(settings) and KEY not in json.dumps(settings.describe())
    assert Settings.from_environ({}).api_key is None and Settings.from_environ({}).require_roles is False
    for env, named in (
        ({"ACRSYNC_API_KEY": "short"}, "ACRSYNC_API_KEY"),
        ({"ACRSYNC_REQUIRE_ROLES": "sometimes"}, "ACRSYNC_REQUIRE_ROLES"),
    ):
        with pytest.raises(ConfigurationError, match=named) as raised:
            Settings.from_environ(env)
        assert "short" not in str(raised.value)


@pytest.fixture
def secured_by_key(wire: Wire, release_id: str) -> TestClient:
    wire(Settings(api_key=KEY))
    return TestClient(asgi_app)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_the_api_key_is_required_when_configured(
    secured_by_key: TestClient, release_id: str, method: str, path: str
) -> None:
    url = path.replace("{id}", release_id)
    body = assert_problem(secured_by_key.request(method, url, json=BODIES.get(path)), 401, "UNAUTHENTICATED")
    assert KEY not in json.dumps(body)
    assert_problem(
        secured_by_key.request(method, url, json=BODIES.get(path), headers={"x-functions-key": "wrong-key"}),
        401,
        "UNAUTHENTICATED",
    )
    assert secured_by_key.request(method, url, json=BODIES.get(path), headers={"x-functions-key": KEY}).status_code in (
        200,
        202,
    )
    with_code = url + ("&" if "?" in url else "?") + f"code={KEY}"
    assert secured_by_key.request(method, with_code, json=BODIES.get(path)).status_code in (200, 202)


def test_credentials_are_checked_before_the_request_is(secured_by_key: TestClient) -> None:
    assert_problem(secured_by_key.get("/api/releases/not-an-id?bogus=1"), 401, "UNAUTHENTICATED")


def test_the_function_key_never_leaks_into_links(secured_by_key: TestClient, services: Services) -> None:
    for i in range(2):
        push(services, tag=f"9.{i}.0", digest=random_digest(), at=PUSHED + timedelta(minutes=i))
    link = secured_by_key.get(f"/api/releases?top=1&code={KEY}").json()["nextLink"]
    assert KEY not in link and "code=" not in link


def test_public_routes_stay_public_with_every_protection_on(wire: Wire) -> None:
    wire(Settings(api_key=KEY, require_roles=True, app_service_auth=True))
    client = TestClient(asgi_app)
    assert client.get("/api/healthz").status_code == 200
    assert KEY not in client.get("/api/healthz").text
    assert client.get("/api/openapi.json").status_code == 200
    assert client.get("/api/docs").status_code == 200


def test_the_webhook_needs_the_key_only_when_one_is_configured(wire: Wire) -> None:
    url = "/runtime/webhooks/eventgrid?functionName=on_acr_event"
    body = delivery(load_event("eventgrid-image-pushed"))
    headers = {"content-type": "application/json", "aeg-event-type": "Notification"}
    wire(Settings(require_roles=True, app_service_auth=True))  # roles never apply to Event Grid
    assert TestClient(asgi_app).post(url, content=body, headers=headers).status_code == 200
    wire(Settings(api_key=KEY))
    client = TestClient(asgi_app)
    assert_problem(client.post(url, content=body, headers=headers), 401, "UNAUTHENTICATED")
    assert client.post(f"{url}&code={KEY}", content=body, headers=headers).status_code == 200
    assert client.options(url, headers={"WebHook-Request-Origin": "eventgrid.azure.net"}).status_code == 401


@pytest.fixture
def secured_by_roles(wire: Wire, release_id: str) -> TestClient:
    wire(Settings(require_roles=True, app_service_auth=True))
    return TestClient(asgi_app)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_app_roles_decide_when_a_principal_is_required(
    secured_by_roles: TestClient, release_id: str, method: str, path: str
) -> None:
    url = path.replace("{id}", release_id)
    assert_problem(secured_by_roles.request(method, url, json=BODIES.get(path)), 401, "UNAUTHENTICATED")
    wrong = {"X-MS-CLIENT-PRINCIPAL": principal("Something.Else")}
    assert_problem(secured_by_roles.request(method, url, json=BODIES.get(path), headers=wrong), 403, "FORBIDDEN")
    reader = {"X-MS-CLIENT-PRINCIPAL": principal("Status.Read")}
    operator = {"X-MS-CLIENT-PRINCIPAL": principal("Sync.Operate")}
    if method == "GET":
        assert secured_by_roles.request(method, url, json=BODIES.get(path), headers=reader).status_code in (200, 202)
    else:
        assert_problem(secured_by_roles.request(method, url, json=BODIES.get(path), headers=reader), 403, "FORBIDDEN")
    assert secured_by_roles.request(method, url, json=BODIES.get(path), headers=operator).status_code in (200, 202)


def test_the_long_role_claim_type_counts(secured_by_roles: TestClient) -> None:
    long_type = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    headers = {"X-MS-CLIENT-PRINCIPAL": principal("Status.Read", role_type=long_type)}
    assert secured_by_roles.get("/api/sites", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b'{"claims": "roles"}').decode(),
        base64.b64encode(b'{"claims": [{"typ": "roles"}]}').decode(),
        base64.b64encode(b'{"claims": [["roles", "Status.Read"]]}').decode(),
        base64.b64encode(b"[" * 5000).decode(),
    ],
)
def test_a_malformed_principal_is_unauthenticated(wire: Wire, header: str) -> None:
    wire(Settings(app_service_auth=True))
    client = TestClient(asgi_app)
    assert_problem(client.get("/api/sites", headers={"X-MS-CLIENT-PRINCIPAL": header}), 401, "UNAUTHENTICATED")


def test_a_principal_without_the_role_is_forbidden_even_when_roles_are_optional(wire: Wire) -> None:
    wire(Settings(app_service_auth=True))
    client = TestClient(asgi_app)
    headers = {"X-MS-CLIENT-PRINCIPAL": principal("Status.Read")}
    assert client.get("/api/sites", headers=headers).status_code == 200
    assert_problem(client.post(f"/api/releases/{'0' * 32}/retry?sites=failed", headers=headers), 403, "FORBIDDEN")
    assert client.get("/api/sites").status_code == 200  # no principal, roles optional: open


def test_a_principal_is_ignored_unless_app_service_authentication_is_on(
    wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    # Without the platform in front, anyone with a function key could claim Sync.Operate and any name.
    services = wire(Settings())
    release_id = push(services)
    move(services, release_id, "plant-01", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    forged = {"X-MS-CLIENT-PRINCIPAL": principal("Something.Else", name="ceo@contoso.example")}
    client = TestClient(create_app())  # a fresh app: it logs the ignored header once
    assert client.get("/api/sites", headers=forged).status_code == 200  # not 403: the claim is not trusted
    answer = client.post(f"/api/releases/{release_id}/retry?sites=failed", headers=forged)
    assert answer.status_code == 202
    evidence = services.store.list_evidence(release_id, site="plant-01")
    reopened = [record for record in evidence if record.summary.startswith("operator")]
    assert reopened and "requested_by" not in reopened[-1].details  # the forged name never lands in evidence
    client.get("/api/sites", headers=forged)
    ignored = [r for r in caplog.records if "x-ms-client-principal" in r.getMessage().lower()]
    assert len(ignored) == 1 and ignored[0].levelname == "WARNING"


def test_roles_cannot_be_required_in_azure_without_app_service_authentication() -> None:
    azure = {
        "WEBSITE_SITE_NAME": "func-acrsync",
        "SYNC_TABLE_ENDPOINT": "https://st.table.core.windows.net",
        "ServiceBusConnection__fullyQualifiedNamespace": "sb.servicebus.windows.net",
        "ACRSYNC_REQUIRE_ROLES": "true",
    }
    with pytest.raises(ConfigurationError, match="WEBSITE_AUTH_ENABLED"):
        Settings.from_environ(azure)
    assert Settings.from_environ({**azure, "WEBSITE_AUTH_ENABLED": "True"}).app_service_auth is True


# -- unknown query parameters and the OpenAPI document ----------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_refuses_unknown_query_parameters(
    client: TestClient, release_id: str, method: str, path: str
) -> None:
    url = path.replace("{id}", release_id)
    url += ("&" if "?" in url else "?") + "unexpected=1"
    assert_problem(client.request(method, url, json=BODIES.get(path)), 400, "UNKNOWN_QUERY_PARAMETER")
    # ?code= is the Azure function key: never refused, whatever the local settings.
    assert client.request(method, url.replace("unexpected=1", "code=whatever"), json=BODIES.get(path)).status_code in (
        200,
        202,
    )


def test_the_openapi_document_declares_every_route_with_its_problems(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for method, path in PROTECTED:
        template = path.split("?")[0].replace("{id}", "{release_id}").replace("plant-01", "{site}")
        operation = document["paths"][template][method.lower()]
        responses = operation["responses"]
        assert "422" not in responses
        for status in (
            ("400", "401", "403", "404") if "{" in template or "events" in template else ("400", "401", "403")
        ):
            assert responses[status]["content"] == {"application/problem+json": {"schema": problem_ref}}
            assert "x-ms-error-code" in responses[status]["headers"]
        assert operation["security"] and operation["operationId"]
    readiness = document["paths"]["/api/releases/{release_id}/readiness"]["get"]["responses"]
    assert {"Retry-After", "Location"} <= set(readiness["202"]["headers"])
    evidence = document["paths"]["/api/releases/{release_id}/evidence"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= set(evidence)
    assert document["paths"]["/api/healthz"]["get"]["security"] == []
    assert "functionKey" in document["components"]["securitySchemes"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


# -- the models describe what the routes answer ------------------------------------------------


def with_tokens(resource_id: str) -> ConnectedRegistryState:
    return ConnectedRegistryState(
        resource_id=resource_id,
        name="plant02",
        connection_state=ConnectionState.ONLINE,
        observed_at=NOW,
        token_id=f"{CR_ID}/../../tokens/plant02",
        client_token_ids=(f"{CR_ID}/../../tokens/plant02-client",),
    )


def test_every_answer_matches_its_documented_model(wire: Wire) -> None:
    from orchestrations.api import models
    from shared.domain.observations import SyncScope, TokenPassword
    from shared.services.governance import check_tokens

    arm = FakeArmReader(
        with_tokens,
        scope=lambda token_id: SyncScope(
            token_id=token_id,
            token_enabled=True,
            repository_patterns=("inspection/*", "retail/*"),
            passwords=(TokenPassword("password1", NOW + timedelta(days=10)),),
        ),
    )
    services = wire(arm=arm)
    release_id = push(services)
    move(services, release_id, "plant-02", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    check_tokens(services, force=True)  # the list then carries the sweeper's findings, with checked_at
    client = TestClient(asgi_app)
    answers = {
        "/api/sites": models.SiteListModel,
        "/api/sites/plant-02": models.SiteDetailModel,
        "/api/sites/plant-02/drift": models.DriftModel,
        "/api/sites/plant-02/rollback": models.SiteRollbackModel,
        "/api/releases": models.ReleasePageModel,
        f"/api/releases/{release_id}": models.ReleaseDetailModel,
        f"/api/releases/{release_id}/readiness": models.ReadinessModel,
        f"/api/releases/{release_id}/evidence": models.EvidenceListModel,
        f"/api/releases/{release_id}/evidence?format=bundle": models.EvidenceBundleModel,
        "/api/signing-key": models.SigningKeyModel,
        "/api/events": models.EventPageModel,
        "/api/report": models.ReportModel,
    }
    for path, model in answers.items():
        response = client.get(path)
        assert response.status_code in (200, 202), (path, response.text)
        model.model_validate(response.json())  # extra fields are refused: a view cannot outgrow its model
    listed = client.get("/api/sites").json()["value"]
    assert {name for site in listed if site["tokens"] for name in site["tokens"]} == {"plant02", "plant02-client"}
    retried = client.post(f"/api/releases/{release_id}/retry?sites=plant-01")
    models.RetryModel.model_validate(retried.json())
