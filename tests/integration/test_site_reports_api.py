"""Site reports over HTTP: an operator issues a site's report token; the site's agent posts with it
(never the API key); what it reported shows on ``GET /api/sites/{site}`` and on the release's rows;
wrong or missing tokens, other sites' tokens, sites that take no reports and bad bodies get
problem+json and change nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.states import SyncReason, SyncState
from shared.domain.workloads import REPORT_SCHEMA
from shared.errors import NotFound
from shared.ports import StateStore
from tests.builders import T0, make_site, move_row, push_release, random_digest
from tests.fakes import CountingSink, FakeClock

API_KEY = "k" * 32
LOCAL = "plant-01.registry.local:8443"
asgi_app = create_app()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def services(store: StateStore, tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    store.upsert_sites(
        [make_site("plant-01", reporter=True), make_site("plant-02", reporter=True), make_site("shop-9")]
    )
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=clock.now)
    wired = bootstrap(
        Settings(data_dir=tmp_path, api_key=API_KEY), store=store, queue=queue, clock=clock, events=CountingSink()
    )
    use_services(wired)
    yield wired
    use_services(None)
    queue.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(asgi_app)


def token_of(client: TestClient, site: str) -> str:
    answer = client.post(f"/api/sites/{site}/report-token", headers={"x-functions-key": API_KEY})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return str(answer.json()["token"])


def body(site: str, digest: str, *, at: Any = T0, report_id: str | None = None) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "id": report_id or str(uuid.uuid4()),
        "site": site,
        "observed_at": at.isoformat(),
        "pods": [
            {
                "namespace": "vision",
                "name": "camera-7d9f-abcde",
                "controller": {"kind": "ReplicaSet", "name": "camera-7d9f"},
                "containers": [
                    {
                        "name": "camera",
                        "image": f"{LOCAL}/inspection/camera:1.5.0",
                        "image_id": f"{LOCAL}/inspection/camera@{digest}",
                    }
                ],
            }
        ],
        "registry": {"tls_expires_at": (T0 + timedelta(days=200)).isoformat(), "checks": []},
    }


def test_an_agent_reports_with_its_site_token_and_the_site_shows_what_runs(
    services: Services, client: TestClient, clock: FakeClock
) -> None:
    digest = random_digest()
    release_id = push_release(services, tag="1.5.0", digest=digest)
    move_row(services, release_id, "plant-01", SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at=T0)
    clock.advance(minutes=3)
    token = token_of(client, "plant-01")
    assert token == token_of(client, "plant-01")  # derived: the same until the secret rotates

    sent = body("plant-01", digest, at=clock.now())
    answer = client.post("/api/sites/plant-01/reports", json=sent, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "site": "plant-01",
        "duplicate": False,
        "running": 1,
        "drift": 0,
        "receipts": 1,
        "expected": [{"repository": "inspection/camera", "digest": digest, "release_id": release_id}],
    }
    again = client.post("/api/sites/plant-01/reports", json=sent, headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 202 and again.json()["duplicate"] is True

    site = client.get("/api/sites/plant-01", headers={"x-functions-key": API_KEY}).json()
    [running] = site["running"]
    assert running["release_id"] == release_id and running["workloads"][0]["name"] == "camera-7d9f"
    assert site["health"]["last_report_at"].startswith(clock.now().isoformat()[:19])
    assert site["health"]["tls_expires_at"].startswith("2027-06-12") and site["pull_errors"] == []
    assert site["reporter"] is True

    release = client.get(f"/api/releases/{release_id}", headers={"x-functions-key": API_KEY}).json()
    row = next(r for r in release["sites"] if r["site"] == "plant-01")
    assert row["running_pods"] == 1 and row["running_since"] is not None
    assert release["adoption"] == {"holding": 1, "running": 1, "ran": 1}


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "another scheme"),
        ({"Authorization": "Bearer acrsr1.forged"}, "a forged token"),
        ({"x-functions-key": API_KEY}, "the API key is not a report token"),
    ],
)
def test_a_report_without_the_sites_token_is_refused(
    services: Services, client: TestClient, headers: dict[str, str], why: str
) -> None:
    answer = client.post("/api/sites/plant-01/reports", json=body("plant-01", random_digest()), headers=headers)
    assert answer.status_code == 401, why
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "acrsr1" not in answer.text
    assert services.store.list_sites()  # and nothing was stored:
    with pytest.raises(NotFound):
        services.store.get_site_runtime("plant-01")


def test_one_sites_token_does_not_open_another_site(services: Services, client: TestClient) -> None:
    other = token_of(client, "plant-02")
    answer = client.post(
        "/api/sites/plant-01/reports",
        json=body("plant-01", random_digest()),
        headers={"Authorization": f"Bearer {other}"},
    )
    assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHENTICATED"


def test_a_site_without_a_reporter_takes_no_reports(services: Services, client: TestClient) -> None:
    token = token_of(client, "shop-9")
    answer = client.post(
        "/api/sites/shop-9/reports", json=body("shop-9", random_digest()), headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 403 and "reporter: true" in answer.json()["detail"]


def test_issuing_a_token_needs_the_api_key(services: Services, client: TestClient) -> None:
    assert client.post("/api/sites/plant-01/report-token").status_code == 401
    assert client.post("/api/sites/nowhere/report-token", headers={"x-functions-key": API_KEY}).status_code == 404


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "MALFORMED_JSON"),
        (json.dumps({"schema": REPORT_SCHEMA}).encode(), "INVALID_REPORT_ID"),
        (b"[" + b"1," * 600_000 + b"1]", "BATCH_TOO_LARGE"),
    ],
)
def test_a_bad_report_body_is_a_problem_and_changes_nothing(
    services: Services, client: TestClient, content: bytes, code: str
) -> None:
    token = token_of(client, "plant-01")
    answer = client.post(
        "/api/sites/plant-01/reports",
        content=content,
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    assert answer.status_code == 400 and answer.json()["code"] == code, answer.text
    with pytest.raises(NotFound):
        services.store.get_site_runtime("plant-01")


def test_the_gate_can_wait_for_the_sites_to_run_the_release(
    services: Services, client: TestClient, clock: FakeClock
) -> None:
    digest = random_digest()
    release_id = push_release(services, tag="1.5.0", digest=digest)
    move_row(services, release_id, "plant-01", SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at=T0)
    key = {"x-functions-key": API_KEY}
    gate = f"/api/releases/{release_id}/readiness"
    assert client.get(gate, params={"sites": "plant-01"}, headers=key).json()["state"] == "ready"
    waiting = client.get(gate, params={"sites": "plant-01", "require_running": "true"}, headers=key)
    assert waiting.status_code == 202 and waiting.json()["pending"][0]["reason"] == "NOT_RUNNING"
    token = token_of(client, "plant-01")
    clock.advance(minutes=1)
    client.post(
        "/api/sites/plant-01/reports",
        json=body("plant-01", digest, at=clock.now()),
        headers={"Authorization": f"Bearer {token}"},
    )
    ready = client.get(gate, params={"sites": "plant-01", "require_running": "true"}, headers=key)
    assert ready.status_code == 200 and ready.json()["state"] == "ready" and ready.json()["running"] == 1
