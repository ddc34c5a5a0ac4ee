"""The status API on every store backend (SQLite and Table Storage on Azurite): the reads the CLI
makes, a release with 1,000 site rows in one call, paging tokens and a retry."""

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
from tests.builders import move_row, push_release, site_names
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
