"""The status API on every store backend (SQLite and Table Storage on Azurite): the reads the CLI
makes, a release with 1,000 site rows in one call, paging tokens, a retry, revalidation from stored
versions and the dashboard's view models."""

from __future__ import annotations

import csv
import io
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
from tests.builders import move_row, push_release, random_digest, site_names
from tests.fakes import CountingSink, FakeClock

asgi_app = create_app()

NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
PUSHED = datetime(2026, 11, 24, 9, 41, 12, tzinfo=UTC)


@pytest.fixture
def services(store: StateStore, tmp_path: Path) -> Iterator[Services]:
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=lambda: NOW)
    wired = bootstrap(
        Settings(data_dir=tmp_path), store=store, queue=queue, clock=FakeClock(NOW), events=CountingSink()
    )
    use_services(wired)
    yield wired
    use_services(None)
    queue.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(asgi_app)


def add_sites(services: Services, count: int) -> list[str]:
    names = site_names(count)
    services.store.upsert_sites(
        [
            Site(name=name, ring="canary" if i < 10 else "prod", critical=i == 0, repositories=("inspection/*",))
            for i, name in enumerate(names)
        ]
    )
    services.catalog.invalidate()
    return names


def push(services: Services, tag: str = "1.4.2", *, digest: str | None = None, at: datetime = PUSHED) -> str:
    return push_release(services, tag=tag, digest=digest, at=at)


def move(services: Services, release_id: str, site: str, state: SyncState, reason: SyncReason) -> None:
    move_row(services, release_id, site, state, reason, at=NOW, source=EvidenceSource.OCI_PROBE, summary="test")


def test_a_release_with_a_thousand_sites_is_read_in_one_call(client: TestClient, services: Services) -> None:
    names = add_sites(services, 1000)
    release_id = push(services)
    for name in names[:10]:
        move(services, release_id, name, SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)

    release = client.get(f"/api/releases/{release_id}")
    assert release.status_code == 200
    body = release.json()
    assert [s["site"] for s in body["sites"]] == names
    assert body["counts"] == {"PENDING": 990, "VERIFIED": 10}
    assert body["sites"][0]["critical"] is True and body["sites"][999]["ring"] == "prod"
    assert (
        client.get(f"/api/releases/{release_id}", headers={"If-None-Match": release.headers["etag"]}).status_code == 304
    )

    everyone = client.get(f"/api/releases/{release_id}/readiness")
    assert everyone.status_code == 202 and int(everyone.headers["retry-after"]) >= 10
    assert (everyone.json()["ready"], everyone.json()["total"]) == (10, 1000)
    canary = client.get(f"/api/releases/{release_id}/readiness?ring=canary")
    assert canary.status_code == 200 and canary.json()["state"] == "ready"
    picked = client.get(f"/api/releases/{release_id}/readiness?sites={names[0]},{names[500]}&min_ready=0.5")
    assert picked.json()["state"] == "ready" and picked.json()["total"] == 2


def test_release_pages_and_filters(client: TestClient, services: Services) -> None:
    add_sites(services, 3)
    ids = [push(services, f"1.{i}.0", at=PUSHED + timedelta(minutes=i)) for i in range(5)]
    seen: list[str] = []
    url: str | None = "/api/releases?repository=inspection/camera&top=2"
    while url is not None:
        body = client.get(url).json()
        seen.extend(r["id"] for r in body["value"])
        url = body.get("nextLink")
    assert seen == list(reversed(ids))
    assert [r["id"] for r in client.get("/api/releases?tag=1.3.0").json()["value"]] == [ids[3]]
    bad = client.get("/api/releases?continuation=eyJmIjoiMCIsInAiOnt9fQ")
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_CONTINUATION"


def test_site_history_evidence_and_retry(client: TestClient, services: Services) -> None:
    [site, other, _] = add_sites(services, 3)
    older = push(services, "1.0.0", at=PUSHED)
    newer = push(services, "1.1.0", at=PUSHED + timedelta(hours=1))
    move(services, older, site, SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    move(services, newer, site, SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    move(services, newer, other, SyncState.STALE, SyncReason.WINDOW_MISSED)

    [latest] = client.get(f"/api/sites/{site}").json()["repositories_state"]
    assert (latest["release_id"], latest["state"], latest["tags"]) == (newer, "FAILED", ["1.1.0"])

    evidence = client.get(f"/api/releases/{newer}/evidence").json()["value"]
    assert {(e["site"], e["state_to"]) for e in evidence} == {(site, "FAILED"), (other, "STALE")}
    rows = list(csv.reader(io.StringIO(client.get(f"/api/releases/{newer}/evidence?format=csv&site={site}").text)))
    assert len(rows) == 2 and rows[1][6] == "FAILED"

    retried = client.post(f"/api/releases/{newer}/retry?sites=failed,stale")
    assert retried.status_code == 202 and sorted(retried.json()["enqueued"]) == sorted([site, other])
    states = {s["site"]: (s["state"], s["reason"]) for s in client.get(f"/api/releases/{newer}").json()["sites"]}
    assert states[site] == states[other] == ("PENDING", "OPERATOR_RETRY")


def test_revalidating_a_release_reads_versions_not_rows(client: TestClient, services: Services) -> None:
    names = add_sites(services, 30)
    release_id = push(services)
    url = f"/api/releases/{release_id}"
    etag = client.get(url).headers["etag"]
    with mock.patch.object(services.store, "list_site_syncs", side_effect=AssertionError("rows read")):
        again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag

    move(services, release_id, names[3], SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    moved = client.get(url, headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.json()["counts"]["VERIFIED"] == 1
    etag = moved.headers["etag"]
    assert client.get(url).headers["etag"] == etag  # the same answer, the same tag: it does not follow the clock

    services.store.upsert_sites([Site(name=names[3], ring="broad", repositories=("inspection/*",))])
    services.catalog.invalidate()
    regrouped = client.get(url, headers={"If-None-Match": etag})
    assert regrouped.status_code == 200 and regrouped.headers["etag"] != etag  # ring shown per row


def test_revalidating_a_pending_gate_reads_versions_and_follows_the_clock(
    client: TestClient, services: Services
) -> None:
    services.store.upsert_sites(
        [
            Site(name="camp-01", repositories=("inspection/*",), schedule="0 22 * * *", sync_window=timedelta(hours=2)),
            Site(name="camp-02", repositories=("inspection/*",)),
        ]
    )
    services.catalog.invalidate()
    release_id = push(services)
    expected = services.store.get_site_sync(release_id, "camp-01").value.expected_ready_at
    assert expected is not None and expected > NOW  # waiting for tonight's window
    url = f"/api/releases/{release_id}/readiness"
    first = client.get(url)
    assert first.status_code == 202 and first.json()["expected_ready_at"] == expected.isoformat()
    etag = first.headers["etag"]
    with mock.patch.object(services.store, "list_site_syncs", side_effect=AssertionError("rows read")):
        again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and int(again.headers["retry-after"]) >= 10 and again.headers["location"]

    services.clock.current = expected + timedelta(
        minutes=1
    )  # the estimate is past: the answer changes, so must the tag
    later = client.get(url, headers={"If-None-Match": etag})
    assert later.status_code == 202 and later.headers["etag"] != etag
    assert later.json()["expected_ready_at"] != expected.isoformat()  # never a time in the past


def test_the_gate_builds_the_rollback_section_only_when_asked(client: TestClient, services: Services) -> None:
    add_sites(services, 3)
    release_id = push(services)
    url = f"/api/releases/{release_id}/readiness"
    with mock.patch("shared.services.rollback.gate_checks", side_effect=AssertionError("rollback built")):
        plain = client.get(url).json()
    assert (plain["rollback"], plain["rollback_ready"]) == (None, None)
    asked = client.get(url + "?rollback=true").json()
    assert asked["rollback_ready"] is False and len(asked["rollback"]) == 3


# -- the dashboard's view models -------------------------------------------------------------------

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
def fleet(services: Services) -> Services:
    services.store.upsert_sites(FLEET)
    services.catalog.invalidate()
    return services


def push_at(services: Services, tag: str, minutes: int) -> str:
    return push(services, tag, digest=random_digest(), at=PUSHED + timedelta(minutes=minutes))


def move_with(
    services: Services, release_id: str, site: str, state: SyncState, reason: SyncReason, **changes: object
) -> None:
    move_row(services, release_id, site, state, reason, at=NOW, source=EvidenceSource.SCHEDULE, **changes)


def test_the_matrix_rolls_up_rings_in_sites_file_order_and_groups_alerts_per_site(
    client: TestClient, fleet: Services
) -> None:
    services = fleet
    older, newer = push_at(services, "1.0.0", 0), push_at(services, "1.1.0", 5)
    offline = NOW - timedelta(minutes=37)
    for release_id in (older, newer):
        move_with(services, release_id, "plant-09", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
        move_with(services, release_id, "store-0010", SyncState.STALE, SyncReason.SITE_SILENT, offline_since=offline)
    move_with(services, newer, "mine-07", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)

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


def test_the_matrix_pages_filters_and_revalidates_from_versions(client: TestClient, fleet: Services) -> None:
    services = fleet
    ids = [push_at(services, f"1.{i}.0", i) for i in range(3)]
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
    move_with(services, ids[1], "plant-02", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    changed = client.get("/api/views/matrix", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    push_at(services, "2.0.0", 30)  # a new release on the page changes it too
    assert client.get("/api/views/matrix", headers={"If-None-Match": changed.headers["etag"]}).status_code == 200


def test_the_release_page_leads_with_the_gate_and_revalidates_from_versions(
    client: TestClient, fleet: Services
) -> None:
    services = fleet
    release_id = push_at(services, "1.0.0", 0)
    move_with(services, release_id, "mine-07", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
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
    move_with(services, release_id, "plant-09", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    again = client.get(f"/api/views/releases/{release_id}", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["etag"] != etag
    missing = client.get("/api/views/releases/" + "0" * 32)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
