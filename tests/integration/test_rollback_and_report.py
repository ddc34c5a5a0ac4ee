"""Rollback readiness and reporting on every store backend (SQLite, Table Storage on Azurite): N-1
found, absent, withdrawn and refused by policy; a fresh check at a real OCI registry; the readiness
gate with require_rollback; report numbers from a scripted history; the API and the CLI answers."""

from __future__ import annotations

import copy
import csv
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from shared.adapters.oci import HttpManifestProbe, StaticSiteCredentials
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap, use_services
from shared.cli import main as cli_main
from shared.config import Settings
from shared.domain.model import Site, TagPolicy
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.ports import StateStore
from shared.services import fanout, ingest
from shared.services.ingest import ingest_delivery
from shared.services.report import site_report
from shared.services.rollback import RollbackReason, site_rollback
from shared.services.summaries import summarize_release
from tests.builders import move_row, push_release
from tests.fakes import CountingSink, FakeClock, delivery, load_event
from tests.support.azurite import free_port
from tests.support.registry import RegistryHandle, push_image, start_registry

asgi_app = create_app()

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
T0 = NOW - timedelta(days=10)
CAMERA = "inspection/camera"
S, V, ST, P = SyncState.SYNCED, SyncState.VERIFIED, SyncState.STALE, SyncState.PENDING
SITES = [
    Site(name="plant-01", ring="canary", critical=True, repositories=("inspection/*",)),
    Site(name="plant-02", ring="canary", repositories=("inspection/*",)),
    Site(name="store-01", ring="prod", repositories=("retail/*",)),
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def services(store: StateStore, tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    store.upsert_sites(SITES)
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=clock.now)
    probe = HttpManifestProbe(timeout=2.0)
    wired = bootstrap(
        Settings(data_dir=tmp_path),
        store=store,
        queue=queue,
        clock=clock,
        probe=probe,
        credentials=StaticSiteCredentials({}),
        events=CountingSink(),
    )
    use_services(wired)
    yield wired
    use_services(None)
    probe.close()
    queue.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(asgi_app)


def set_sites(services: Services, *sites: Site) -> None:
    services.store.upsert_sites(list(sites))
    services.catalog.invalidate()


def push(services: Services, tag: str, *, at: datetime, repository: str = CAMERA, digest: str | None = None) -> str:
    """An ImagePushed event from the parent registry, as Event Grid delivers it, and the release
    summary its fan-out schedules (which records the new rows in the site ledger); the release id."""
    release_id = push_release(services, repository, tag, digest=digest, at=at)
    summarize_release(services, release_id)
    return release_id


def delete(services: Services, release_id: str, *, site: str | None = None) -> None:
    """ImageDeleted: from the parent registry (withdraws the release), or at a site's connected registry."""
    release = services.store.get_release(release_id).value
    if site is None:
        event = copy.deepcopy(load_event("eventgrid-image-deleted"))
    else:
        event = copy.deepcopy(load_event("eventgrid-connected-registry-image-pushed"))
        event["eventType"] = "Microsoft.ContainerRegistry.ImageDeleted"
        event["data"]["action"] = "delete"
        event["data"]["connectedregistry"]["name"] = site
        event["topic"] = event["topic"].rsplit("/", 1)[0] + f"/{site}"
        event["data"]["target"].pop("tag", None)
    event["id"] = str(uuid.uuid4())
    event["eventTime"] = services.clock.now().isoformat()
    event["subject"] = release.repository
    event["data"]["target"].update(repository=release.repository, digest=release.digest)
    ingest_delivery(services, delivery(event), "application/json")


def move(
    services: Services,
    release_id: str,
    site: str,
    state: SyncState,
    reason: SyncReason,
    *,
    after: timedelta = timedelta(minutes=5),
    source: EvidenceSource = EvidenceSource.OCI_PROBE,
) -> None:
    """Move a row ``after`` its release's push (the time stamps the row and its evidence)."""
    at = services.store.get_release(release_id).value.pushed_at + after
    move_row(services, release_id, site, state, reason, at=at, source=source, summary=f"scripted {state}")


def answer_for(services: Services, site: str, *, fresh: bool = False, repository: str = CAMERA) -> Any:
    [answer] = site_rollback(services, site, repository=repository, fresh=fresh)
    return answer


# -- rollback readiness ---------------------------------------------------------------------------


def test_n_minus_one_is_found_and_then_reported_gone_from_the_site(services: Services, client: TestClient) -> None:
    old = push(services, "1.0.0", at=T0)
    move(services, old, "plant-01", V, SyncReason.MANIFEST_PRESENT, after=timedelta(minutes=10))
    new = push(services, "1.1.0", at=T0 + timedelta(days=1))

    answer = answer_for(services, "plant-01")
    assert answer.ready and answer.reason is RollbackReason.PREVIOUS_PRESENT
    assert answer.current is not None and answer.current.release_id == new and answer.current_state is P
    assert answer.previous is not None and answer.previous.release.release_id == old
    assert answer.previous.presence.present is True and answer.previous.presence.source == "oci-probe"

    body = client.get("/api/sites/plant-01/rollback").json()
    assert body["site"] == "plant-01"
    [entry] = body["value"]  # plant-01's only repository with a checked row
    assert entry["repository"] == CAMERA and entry["rollback_ready"] is True
    assert entry["reason"] == "PREVIOUS_PRESENT"
    assert entry["current"] == {
        "release_id": new,
        "digest": services.store.get_release(new).value.digest,
        "tags": ["1.1.0"],
        "state": "PENDING",
    }
    assert entry["previous"] == {
        "release_id": old,
        "digest": services.store.get_release(old).value.digest,
        "tags": ["1.0.0"],
        "state": "VERIFIED",
        "withdrawn_at": None,
        "present": True,
        "evidence_source": "oci-probe",
        "observed_at": (T0 + timedelta(minutes=10)).isoformat(),
        "probe_error": None,
    }

    # plant-02 never received 1.0.0: no previous release to go back to.
    nothing = answer_for(services, "plant-02")
    assert (nothing.ready, nothing.reason, nothing.previous) == (False, RollbackReason.NO_PREVIOUS_RELEASE, None)

    # The site's own connected registry reports 1.0.0 deleted there: the evidence says absent.
    delete(services, old, site="plant-01")
    gone = client.get(f"/api/sites/plant-01/rollback?repository={CAMERA}").json()["value"][0]
    assert (gone["rollback_ready"], gone["reason"]) == (False, "PREVIOUS_NOT_PRESENT")
    assert gone["previous"]["present"] is False and gone["previous"]["evidence_source"] == "connected-registry-event"


def test_a_withdrawn_n_minus_one_does_not_count_and_an_older_one_takes_its_place(services: Services) -> None:
    old = push(services, "1.0.0", at=T0)
    move(services, old, "plant-01", V, SyncReason.MANIFEST_PRESENT)
    push(services, "1.1.0", at=T0 + timedelta(days=1))
    delete(services, old)  # deleted from the parent: withdrawn (still present at plant-01)

    answer = answer_for(services, "plant-01")
    assert (answer.ready, answer.reason) == (False, RollbackReason.PREVIOUS_WITHDRAWN)
    assert answer.previous is not None and answer.previous.release.release_id == old
    assert answer.previous.release.withdrawn_at is not None

    older = push(services, "0.9.0", at=T0 - timedelta(days=1))  # arrives late, but was pushed before 1.0.0
    move(services, older, "plant-01", S, SyncReason.SYNCED_AFTER_PUSH, source=EvidenceSource.ARM_LAST_SYNC)
    answer = answer_for(services, "plant-01")
    assert (answer.ready, answer.reason) == (True, RollbackReason.PREVIOUS_PRESENT)
    assert answer.previous is not None and answer.previous.release.release_id == older
    assert answer.previous.presence.source == "arm-last-sync"


def test_a_release_the_sites_policy_no_longer_admits_is_no_rollback_target(services: Services) -> None:
    dev = push(services, "dev-1", at=T0)
    move(services, dev, "plant-02", V, SyncReason.MANIFEST_PRESENT)
    current = push(services, "1.1.0", at=T0 + timedelta(days=1))
    assert answer_for(services, "plant-02").ready  # dev-1 is N-1 while the policy is open

    set_sites(services, replace(SITES[1], tag_policy=TagPolicy(semver_only=True)))
    answer = answer_for(services, "plant-02")
    assert (answer.ready, answer.reason, answer.previous) == (False, RollbackReason.NO_PREVIOUS_RELEASE, None)
    assert answer.current is not None and answer.current.release_id == current

    stable = push(services, "1.0.0", at=T0 - timedelta(days=1))
    move(services, stable, "plant-02", V, SyncReason.MANIFEST_PRESENT)
    answer = answer_for(services, "plant-02")
    assert answer.ready and answer.previous is not None and answer.previous.release.release_id == stable


def test_rollback_problems(services: Services, client: TestClient) -> None:
    missing = client.get("/api/sites/plant-09/rollback")
    assert missing.status_code == 404 and missing.json()["code"] == "SITE_NOT_FOUND"
    assert client.get("/api/sites/Plant_01/rollback").json()["code"] == "INVALID_SITE_NAME"
    assert client.get("/api/sites/plant-01/rollback?repository=Bad..Name").json()["code"] == "INVALID_REPOSITORY"
    assert client.get("/api/sites/plant-01/rollback?fresh=perhaps").json()["code"] == "INVALID_REQUEST"
    assert client.get("/api/sites/plant-01/rollback?since=1d").json()["code"] == "UNKNOWN_QUERY_PARAMETER"
    none = client.get(f"/api/sites/store-01/rollback?repository={CAMERA}").json()["value"][0]
    assert none == {
        "repository": CAMERA,
        "current": None,
        "previous": None,
        "rollback_ready": False,
        "reason": "NO_CURRENT_RELEASE",
    }
    first = client.get("/api/sites/plant-01/rollback")
    assert first.status_code == 200 and first.json() == {"site": "plant-01", "value": []}
    again = client.get("/api/sites/plant-01/rollback", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


@pytest.fixture(scope="module")
def site_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryHandle]:
    handle = start_registry(tmp_path_factory.mktemp("site-registry"))
    yield handle
    handle.stop()


def test_a_fresh_check_asks_the_sites_registry(services: Services, site_registry: RegistryHandle) -> None:
    runtime = "inspection/model-runtime"
    at_site = push_image(site_registry.url, CAMERA, "1.0.0").digest
    push_image(site_registry.url, CAMERA, "1.1.0")
    current_runtime = push_image(site_registry.url, runtime, "2.0.0").digest
    set_sites(
        services,
        Site(name="plant-04", repositories=("inspection/*",), endpoint=site_registry.url),
        Site(name="plant-05", repositories=("inspection/*",), endpoint=f"http://127.0.0.1:{free_port()}"),
    )
    old = push(services, "1.0.0", at=T0, digest=at_site)
    old_runtime = push(services, "1.0.0", at=T0, repository=runtime)  # a digest the site never had
    for release_id in (old, old_runtime):
        for site in ("plant-04", "plant-05"):
            move(services, release_id, site, S, SyncReason.SYNCED_AFTER_PUSH, source=EvidenceSource.ARM_LAST_SYNC)
    push(services, "1.1.0", at=T0 + timedelta(days=1))
    push(services, "2.0.0", at=T0 + timedelta(days=1), repository=runtime, digest=current_runtime)

    by_evidence = answer_for(services, "plant-04")
    assert by_evidence.previous is not None and by_evidence.previous.presence.source == "arm-last-sync"

    present = answer_for(services, "plant-04", fresh=True)
    assert present.ready and present.previous is not None
    assert (present.previous.presence.present, present.previous.presence.source) == (True, "oci-probe")

    absent = answer_for(services, "plant-04", fresh=True, repository=runtime)
    assert (absent.ready, absent.reason) == (False, RollbackReason.PREVIOUS_NOT_PRESENT)
    assert absent.previous is not None and absent.previous.presence.present is False
    assert answer_for(services, "plant-04", repository=runtime).ready  # the evidence alone still says present

    unreachable = answer_for(services, "plant-05", fresh=True)
    assert (unreachable.ready, unreachable.reason) == (False, RollbackReason.PREVIOUS_PRESENCE_UNKNOWN)
    assert unreachable.previous is not None and unreachable.previous.presence.probe_error == "unreachable"

    body = TestClient(asgi_app).get("/api/sites/plant-05/rollback?fresh=true").json()
    assert [(e["repository"], e["previous"]["present"]) for e in body["value"]] == [(CAMERA, None), (runtime, None)]


# -- the readiness gate -------------------------------------------------------------------------


def test_require_rollback_blocks_promotion_until_every_site_could_go_back(
    services: Services, client: TestClient
) -> None:
    first = push(services, "1.0.0", at=T0)
    for site in ("plant-01", "plant-02"):
        move(services, first, site, V, SyncReason.MANIFEST_PRESENT)
    strict = client.get(f"/api/releases/{first}/readiness?require_rollback=true").json()
    assert strict["state"] == "failed" and strict["require_rollback"] is True
    assert strict["reasons"] == [{"code": "ROLLBACK_NOT_READY", "sites": ["plant-01", "plant-02"]}]

    second = push(services, "1.1.0", at=T0 + timedelta(days=1))
    for site in ("plant-01", "plant-02"):
        move(services, second, site, V, SyncReason.MANIFEST_PRESENT)
    url = f"/api/releases/{second}/readiness"
    plain = client.get(url).json()  # the section costs reads of older releases: built only when asked for
    assert (plain["state"], plain["rollback_ready"], plain["rollback"]) == ("ready", None, None)
    url += "?rollback=true"
    relaxed = client.get(url).json()
    assert (relaxed["state"], relaxed["require_rollback"], relaxed["rollback_ready"]) == ("ready", False, True)
    assert relaxed["rollback"] == [
        {"site": site, "rollback_ready": True, "reason": "PREVIOUS_PRESENT", "previous_release_id": first}
        for site in ("plant-01", "plant-02")
    ]
    assert client.get(url + "&require_rollback=true").json()["state"] == "ready"

    delete(services, first, site="plant-02")  # plant-02 cleaned 1.0.0 up
    relaxed = client.get(url).json()
    assert (relaxed["state"], relaxed["rollback_ready"]) == ("ready", False)
    assert relaxed["rollback"][1] == {
        "site": "plant-02",
        "rollback_ready": False,
        "reason": "PREVIOUS_NOT_PRESENT",
        "previous_release_id": first,
    }
    strict = client.get(url + "&require_rollback=true")
    assert strict.status_code == 200
    assert strict.json()["state"] == "failed"
    assert strict.json()["reasons"] == [{"code": "ROLLBACK_NOT_READY", "sites": ["plant-02"]}]
    canary_one = client.get(url + "&require_rollback=true&sites=plant-01").json()
    assert canary_one["state"] == "ready" and [c["site"] for c in canary_one["rollback"]] == ["plant-01"]


# -- reporting ----------------------------------------------------------------------------------


def scripted_history(services: Services) -> None:
    """Five releases in the last 30 days and one before them.

    plant-01 gets every release: lags 60, 120, 180, 240 and 600 s.
    plant-02: r1 SYNCED after 300 s, r2 VERIFIED after 900 s, r3 STALE (WINDOW_MISSED) then SYNCED
    after 7200 s, r4 STALE (SITE_SILENT), retried, STALE again (WINDOW_MISSED: one incident), r5 still PENDING.
    store-01 is out of scope for all of them.
    """
    ancient = push(services, "0.1.0", at=NOW - timedelta(days=40))
    move(services, ancient, "plant-01", S, SyncReason.SYNCED_AFTER_PUSH, after=timedelta(seconds=30))
    move(services, ancient, "plant-02", ST, SyncReason.WINDOW_MISSED, after=timedelta(hours=2))
    base = NOW - timedelta(days=20)
    releases = [push(services, f"1.{i}.0", at=base + timedelta(days=i)) for i in range(1, 6)]
    for release_id, lag in zip(releases, (60, 120, 180, 240, 600), strict=True):
        move(services, release_id, "plant-01", V, SyncReason.MANIFEST_PRESENT, after=timedelta(seconds=lag))
    r1, r2, r3, r4, _ = releases
    move(services, r1, "plant-02", S, SyncReason.SYNCED_AFTER_PUSH, after=timedelta(seconds=300))
    move(services, r2, "plant-02", V, SyncReason.MANIFEST_PRESENT, after=timedelta(seconds=900))
    move(services, r3, "plant-02", ST, SyncReason.WINDOW_MISSED, after=timedelta(hours=1))
    move(services, r3, "plant-02", S, SyncReason.SYNCED_AFTER_PUSH, after=timedelta(hours=2))
    move(services, r4, "plant-02", ST, SyncReason.SITE_SILENT, after=timedelta(hours=1))
    move(services, r4, "plant-02", P, SyncReason.OPERATOR_RETRY, after=timedelta(hours=1, minutes=10))
    move(services, r4, "plant-02", ST, SyncReason.WINDOW_MISSED, after=timedelta(hours=1, minutes=30))


EXPECTED = [
    {
        "site": "plant-01",
        "ring": "canary",
        "critical": True,
        "releases_received": 5,
        "releases_ready": 5,
        # Estimates from the lag histogram (5 % buckets): exactly 180 and 528 (240 + 0.8 × (600 − 240)).
        "lag_median_seconds": 180.63,
        "lag_p95_seconds": 537.754,
        "windows_missed": 0,
        "stale_incidents": 0,
        "bytes_delivered": 0,  # no release of this history was weighed
        "exposure": {"repositories_approved": 1, "drift": None, "over_exposed": None, "missing": None},
    },
    {
        "site": "plant-02",
        "ring": "canary",
        "critical": False,
        "releases_received": 5,
        "releases_ready": 3,
        # Exactly 900 and 6570 (900 + 0.9 × (7200 − 900)).
        "lag_median_seconds": 903.725,
        "lag_p95_seconds": 6718.927,
        "windows_missed": 2,
        "stale_incidents": 2,  # the retried r4 went straight back to stale: the same incident
        "bytes_delivered": 0,  # no release of this history was weighed
        "exposure": {"repositories_approved": 1, "drift": None, "over_exposed": None, "missing": None},
    },
    {
        "site": "store-01",
        "ring": "prod",
        "critical": False,
        "releases_received": 0,
        "releases_ready": 0,
        "lag_median_seconds": None,
        "lag_p95_seconds": None,
        "windows_missed": 0,
        "stale_incidents": 0,
        "bytes_delivered": 0,  # no release of this history was weighed
        "exposure": {"repositories_approved": 1, "drift": None, "over_exposed": None, "missing": None},
    },
]


def test_the_report_counts_a_scripted_history(services: Services, client: TestClient) -> None:
    scripted_history(services)
    report = site_report(services, "30d")
    assert report["since"] == (NOW - timedelta(days=30)).isoformat() and report["until"] == NOW.isoformat()
    assert report["value"] == EXPECTED

    response = client.get("/api/report?since=30d")
    assert response.status_code == 200 and response.json() == report
    assert client.get("/api/report", headers={"If-None-Match": response.headers["etag"]}).status_code == 304
    wider = client.get("/api/report?since=45d").json()["value"]
    assert wider[0]["releases_received"] == 6 and wider[1]["stale_incidents"] == 3
    narrow = client.get("/api/report?since=12h").json()["value"]
    assert [entry["releases_received"] for entry in narrow] == [0, 0, 0]
    for bad in ("0d", "30", "400d", "thirty", "-1d", "1w"):
        problem = client.get(f"/api/report?since={bad}")
        assert problem.status_code == 400 and problem.json()["code"] == "INVALID_SINCE", bad
    assert client.get("/api/report?top=5").json()["code"] == "UNKNOWN_QUERY_PARAMETER"


def test_releases_from_before_the_ledger_are_counted_from_their_rows_alike(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same history written as before the site ledger existed (releases not indexed, rows not in
    the ledger) gives the same report, counted from the rows and the evidence."""
    made_row, candidate = fanout.new_row, ingest._candidate

    def row_as_before(*args: Any, **kwargs: Any) -> Any:
        return replace(made_row(*args, **kwargs), in_ledger=False)

    monkeypatch.setattr(fanout, "new_row", row_as_before)
    monkeypatch.setattr(ingest, "new_row", row_as_before)
    monkeypatch.setattr(ingest, "_candidate", lambda event: replace(candidate(event), indexed=False))
    scripted_history(services)
    assert not any(release.indexed for release in services.store.list_releases(page_size=50).items)
    assert services.store.list_ledger(pushed_from=NOW - timedelta(days=60), pushed_until=NOW) == []
    assert site_report(services, "30d")["value"] == EXPECTED


@pytest.fixture
def api_url(services: Services) -> Iterator[str]:
    """The app on a real loopback port, for the CLI."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_the_cli_prints_the_report(services: Services, api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    scripted_history(services)
    assert cli_main(["report", "--since", "30d", "-o", "json", "--api-url", api_url]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == EXPECTED

    assert cli_main(["report", "-o", "csv", "--api-url", api_url]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith("site,ring,critical,releases_received,") and "\r\n" in text
    assert rows[1] == {
        "site": "plant-02",
        "ring": "canary",
        "critical": "false",
        "releases_received": "5",
        "releases_ready": "3",
        "lag_median_seconds": "903.725",
        "lag_p95_seconds": "6718.927",
        "windows_missed": "2",
        "stale_incidents": "2",
        "repositories_approved": "1",
        "drift": "",
        "over_exposed": "",
        "missing": "",
        "bytes_delivered": "0",
    }
    assert rows[2]["lag_median_seconds"] == ""

    assert cli_main(["report", "--api-url", api_url]) == 0
    table = capsys.readouterr().out
    assert "plant-01 ★" in table and "3m 01s" in table and "1h 51m" in table  # 180.63 s, 6718.927 s
    assert "store-01" in table and "—" in table

    assert cli_main(["report", "--since", "0d", "--api-url", api_url]) == 3
    assert "INVALID_SINCE" in capsys.readouterr().err
    assert cli_main(["report", "-o", "xml", "--api-url", api_url]) == 3
    assert cli_main(["report", "--query", "value[?stale_incidents > `0`].site", "-o", "tsv", "--api-url", api_url]) == 0
    assert capsys.readouterr().out.split() == [e["site"] for e in EXPECTED if e["stale_incidents"] > 0]
    assert cli_main(["report", "-o", "tsv", "--api-url", api_url]) == 0
    assert capsys.readouterr().out.splitlines()[1].split("\t")[:2] == ["plant-02", "canary"]
    assert cli_main(["report", "--api-url", f"http://127.0.0.1:{free_port()}"]) == 4


def test_a_fresh_check_against_a_hostile_site_registry_answers_unknown_not_500(
    services: Services, client: TestClient
) -> None:
    from tests.support.hostile_registry import Answer, BearerScript, hostile_server

    # The site's token realm answers JSON nested 60,000 deep: a RecursionError in a naive reader.
    script = BearerScript(
        "sha256:" + "a" * 64, token=lambda seen: Answer(200, [("Content-Type", "application/json")], b"[" * 60_000)
    )
    with hostile_server(script) as site:
        script.realm = f"{site.url}/token"
        services.store.upsert_sites([Site(name="plant-09", repositories=("inspection/*",), endpoint=site.url)])
        services.catalog.invalidate()
        old = push(services, "1.0.0", at=T0)
        move(services, old, "plant-09", S, SyncReason.SYNCED_AFTER_PUSH, source=EvidenceSource.ARM_LAST_SYNC)
        push(services, "1.1.0", at=T0 + timedelta(days=1))
        answer = client.get("/api/sites/plant-09/rollback?fresh=true")
    assert answer.status_code == 200, answer.text
    [entry] = answer.json()["value"]
    assert (entry["reason"], entry["previous"]["present"]) == ("PREVIOUS_PRESENCE_UNKNOWN", None)
    refusal = entry["previous"]["probe_error"]
    assert refusal.startswith("refused by the site registry: ") and "nested" in refusal, refusal
