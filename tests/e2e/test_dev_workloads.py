"""`acrsync dev` simulates what runs at each site: after a push arrives, each simulated site rolls its
workloads to it; the site page, the release rows and `acrsync site` show the digest running and its
release, a pull error injected with `acrsync dev site pull-error`, and the site's health; an offline
site keeps what it ran, and a signed RUNNING receipt proves the first sighting offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from orchestrations.api.dev import DevTools
from shared.cli import main
from shared.domain.evidence_bundles import verify_bundle
from shared.local.environment import DevEnvironment, DevOptions
from shared.local.workloads import ROLL_DELAY
from shared.services.workloads import observe_sites
from tests.builders import T0, push_release, random_digest
from tests.fakes import FakeClock
from tests.support.server import serve

SITES = """\
registry: contosoacr.azurecr.io
sites:
  - name: plant-01
    ring: canary
    repositories: [inspection/*]
  - name: plant-02
    repositories: [inspection/*]
"""


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[DevEnvironment, TestClient, FakeClock]]:
    sites = tmp_path / "sites.yaml"
    sites.write_text(SITES)
    clock = FakeClock(T0)
    environment = DevEnvironment(DevOptions(data_dir=tmp_path / "data", sites_file=sites), environ={}, clock=clock)
    environment.load_sites()
    app = create_app(
        dev_tools=DevTools(sites=environment.simulation, parent=environment.registries, workloads=environment.workloads)
    )
    environment.start(runtime=False)
    try:
        yield environment, TestClient(app), clock
    finally:
        environment.stop()


def arrive(environment: DevEnvironment, clock: FakeClock) -> None:
    """Let the simulated sites sync and the checks run, then let the workloads roll."""
    for _ in range(3):
        clock.advance(seconds=30)
        environment.runtime.process_available()
    clock.advance(seconds=ROLL_DELAY.total_seconds() + 1)
    observe_sites(environment.services)


def test_a_push_is_seen_running_with_its_release_and_an_injected_pull_error(
    dev: tuple[DevEnvironment, TestClient, FakeClock], capsys: pytest.CaptureFixture[str]
) -> None:
    environment, client, clock = dev
    digest = random_digest()
    release_id = push_release(environment.services, tag="1.5.0", digest=digest, at=clock.now())
    arrive(environment, clock)

    site = client.get("/api/sites/plant-01").json()
    [running] = site["running"]
    assert (running["digest"], running["release_id"], running["source"]) == (digest, release_id, "simulated")
    assert running["pods"] == 2 and running["workloads"][0] == {
        "namespace": "apps",
        "kind": "Deployment",
        "name": "camera",
        "pods": 2,
    }
    assert site["health"]["cluster_connectivity"] == "Connected" and site["health"]["extension"]["state"] == "Succeeded"
    release = client.get(f"/api/releases/{release_id}").json()
    assert release["adoption"]["running"] == 2
    assert all(row["running_pods"] == 2 and row["running_since"] for row in release["sites"])

    answer = client.post("/api/dev/sites/plant-01/pull-errors", json={"image": "inspection/camera:9.9.9"})
    assert answer.status_code == 200
    assert client.post("/api/dev/sites/nowhere/pull-errors", json={"image": "a:b"}).status_code == 404
    assert client.post("/api/dev/sites/plant-01/pull-errors", json={"image": "has space"}).status_code == 400
    clock.advance(seconds=20)
    observe_sites(environment.services)
    [error] = client.get("/api/sites/plant-01").json()["pull_errors"]
    assert error["image"] == "inspection/camera:9.9.9" and error["reason"] == "ImagePullBackOff"
    events = client.get("/api/events?limit=1000").json()["value"]
    assert [e["data"]["site"] for e in events if e["type"] == "acrsync.site.pull_failed"] == ["plant-01"]

    bundle = client.get(f"/api/releases/{release_id}/evidence", params={"format": "bundle"}).json()
    verified = verify_bundle(bundle)
    assert verified.receipts == 4  # each site's arrival and its RUNNING receipt

    with serve(client.app) as base_url:  # the CLI, through the API as a user runs it
        capsys.readouterr()
        assert main(["sites", "running", "-o", "tsv", "--api-url", base_url]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[:4] for line in lines] == [
            ["plant-01", "inspection/camera", digest[7:19], release_id[:12]],
            ["plant-02", "inspection/camera", digest[7:19], release_id[:12]],
        ]
        assert main(["site", "plant-01", "-o", "table", "--api-url", base_url]) == 0
        shown = capsys.readouterr().out
        assert digest[7:19] in shown and "ImagePullBackOff" in shown and "SYNCED" in shown


def test_an_offline_site_keeps_what_it_ran(dev: tuple[DevEnvironment, TestClient, FakeClock]) -> None:
    environment, client, clock = dev
    first = random_digest()
    push_release(environment.services, tag="1.5.0", digest=first, at=clock.now())
    arrive(environment, clock)
    assert client.post("/api/dev/sites/plant-02/offline").status_code == 200
    second = random_digest()
    push_release(environment.services, tag="1.6.0", digest=second, at=clock.now())
    arrive(environment, clock)
    by_site = {
        name: [image["digest"] for image in client.get(f"/api/sites/{name}").json()["running"]]
        for name in ("plant-01", "plant-02")
    }
    assert by_site == {"plant-01": [second], "plant-02": [first]}
    assert client.get("/api/sites/plant-02").json()["health"]["cluster_connectivity"] == "Offline"
