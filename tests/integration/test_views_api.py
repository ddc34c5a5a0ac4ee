"""The dashboard's view models on every store backend: one request per page, rings in sites-file order,
roll-ups per ring, alerts grouped per site, and revalidation from stored versions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.model import Site
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.ports import StateStore
from tests.builders import move_row, push_release, random_digest
from tests.fakes import CountingSink, FakeClock

asgi_app = create_app()
NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
PUSHED = datetime(2026, 11, 24, 9, 41, 12, tzinfo=UTC)
# As a sites file lists them: canary first, then broad, then critical mines; names out of alphabetical order.
FLEET = [
    Site(name="plant-09", ring="canary", critical=True, repositories=("inspection/*",), position=0),
    Site(name="plant-02", ring="canary", repositories=("inspection/*",), position=1),
    Site(name="store-0010", ring="broad", repositories=("inspection/*",), position=2),
    Site(name="store-0002", ring="broad", repositories=("inspection/*",), position=3),
    Site(name="mine-07", ring="mines", critical=True, repositories=("inspection/*",), position=4),
    Site(name="retail-01", ring="broad", repositories=("retail/*",), position=5),
]


@pytest.fixture
def services(store: StateStore, tmp_path: Path) -> Iterator[Services]:
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=lambda: NOW)
    wired = bootstrap(
        Settings(data_dir=tmp_path), store=store, queue=queue, clock=FakeClock(NOW), events=CountingSink()
    )
    store.upsert_sites(FLEET)
    wired.catalog.invalidate()
    use_services(wired)
    yield wired
    use_services(None)
    queue.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(asgi_app)


def push(services: Services, tag: str, minutes: int) -> str:
    return push_release(services, tag=tag, digest=random_digest(), at=PUSHED + timedelta(minutes=minutes))


def move(
    services: Services, release_id: str, site: str, state: SyncState, reason: SyncReason, **changes: object
) -> None:
    move_row(services, release_id, site, state, reason, at=NOW, source=EvidenceSource.SCHEDULE, **changes)


def test_the_matrix_rolls_up_rings_in_sites_file_order_and_groups_alerts_per_site(
    client: TestClient, services: Services
) -> None:
    older, newer = push(services, "1.0.0", 0), push(services, "1.1.0", 5)
    offline = NOW - timedelta(minutes=37)
    for release_id in (older, newer):
        move(services, release_id, "plant-09", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
        move(services, release_id, "store-0010", SyncState.STALE, SyncReason.SITE_SILENT, offline_since=offline)
    move(services, newer, "mine-07", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)

    answer = client.get("/api/views/matrix")
    assert answer.status_code == 200 and answer.headers["etag"].startswith('"')
    view = answer.json()
    assert [(r["name"], [s["name"] for s in r["sites"]]) for r in view["rings"]] == [
        ("canary", ["plant-09", "plant-02"]),
        ("broad", ["store-0010", "store-0002", "retail-01"]),
        ("mines", ["mine-07"]),
    ]
    assert [r["id"] for r in view["releases"]] == [newer, older]  # newest push first
    newest = view["releases"][0]
    assert [(r["ring"], r["ready"], r["total"], r["stale"], r["failed"]) for r in newest["rings"]] == [
        ("canary", 1, 2, 0, 0),
        ("broad", 0, 2, 1, 0),  # retail-01 does not take inspection/*: not counted
        ("mines", 0, 1, 0, 1),
    ]
    assert newest["cells"][0] == {"state": "VERIFIED", "reason": "MANIFEST_PRESENT"}
    assert newest["cells"][2]["offline_since"] == offline.isoformat()
    assert newest["cells"][4]["state"] == "SKIPPED"
    broad = view["rings"][1]["sites"][0]
    assert (broad["offline_since"], broad["stale"]) == (offline.isoformat(), 2)
    # One alert per site, critical first: mine-07's failure, then store-0010 offline with two stale releases.
    assert [(a["site"], a["stale"], a["failed"], a["offline_since"]) for a in view["alerts"]] == [
        ("mine-07", 0, 1, None),
        ("store-0010", 2, 0, offline.isoformat()),
    ]
    assert view["page"] == {"shown": 2, "top": 20, "continuation": None}


def test_the_matrix_pages_filters_and_revalidates_from_versions(client: TestClient, services: Services) -> None:
    ids = [push(services, f"1.{i}.0", i) for i in range(3)]
    first = client.get("/api/views/matrix?top=2").json()
    assert [r["id"] for r in first["releases"]] == [ids[2], ids[1]] and first["page"]["continuation"]
    rest = client.get("/api/views/matrix", params={"top": 2, "continuation": first["page"]["continuation"]}).json()
    assert [r["id"] for r in rest["releases"]] == [ids[0]] and rest["page"]["continuation"] is None
    canary = client.get("/api/views/matrix?ring=canary").json()
    assert [r["name"] for r in canary["rings"]] == ["canary"] and len(canary["releases"][0]["cells"]) == 2
    unknown = client.get("/api/views/matrix?ring=nowhere")
    assert unknown.status_code == 400 and unknown.json()["code"] == "UNKNOWN_RING"
    assert client.get("/api/views/matrix?top=0").status_code == 400

    etag = client.get("/api/views/matrix").headers["etag"]
    with mock.patch.object(services.store, "list_site_syncs", side_effect=AssertionError("rows read")):
        assert client.get("/api/views/matrix", headers={"If-None-Match": etag}).status_code == 304
    move(services, ids[1], "plant-02", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    changed = client.get("/api/views/matrix", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    push(services, "2.0.0", 30)  # a new release on the page changes it too
    assert client.get("/api/views/matrix", headers={"If-None-Match": changed.headers["etag"]}).status_code == 200


def test_the_release_page_leads_with_the_gate_and_revalidates_from_versions(
    client: TestClient, services: Services
) -> None:
    release_id = push(services, "1.0.0", 0)
    move(services, release_id, "mine-07", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    answer = client.get(f"/api/views/releases/{release_id}")
    assert answer.status_code == 200
    page = answer.json()
    assert page["gate"]["state"] == "failed" and page["gate"]["blocked"][0]["site"] == "mine-07"
    assert page["release"]["id"] == release_id and len(page["release"]["sites"]) == 6
    assert page["evidence_total"] == len(page["evidence"]) >= 1
    assert page["evidence"][0]["state_to"] == "FAILED"  # newest first

    etag = answer.headers["etag"]
    with mock.patch.object(services.store, "list_site_syncs", side_effect=AssertionError("rows read")):
        assert client.get(f"/api/views/releases/{release_id}", headers={"If-None-Match": etag}).status_code == 304
    move(services, release_id, "plant-09", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    again = client.get(f"/api/views/releases/{release_id}", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["etag"] != etag
    missing = client.get("/api/views/releases/" + "0" * 32)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
