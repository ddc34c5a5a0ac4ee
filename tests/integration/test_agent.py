"""`acrsync agent` at a site, with real parts: the real ``kubernetes`` client against a loopback server
answering ``v1 PodList``, a real ``docker-registry`` over TLS with a certificate the test made (the
site's connected registry), and the acrsync API served over HTTP. It reports what runs, checks
disconnected pulls (manifest and config blob), reads the TLS expiry, keeps reports while the uplink
is down and delivers them oldest first when it returns, with nothing lost or doubled."""

from __future__ import annotations

import json
import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrations.api import create_app
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.cli import main
from shared.config import Settings
from shared.domain.states import SyncReason, SyncState
from shared.services.workloads import issue_report_token, site_runtime
from tests.builders import make_site, move_row, push_release
from tests.fakes import CountingSink
from tests.support.kube_server import KubeServer, pod
from tests.support.registry import push_image, self_signed_certificate, start_registry
from tests.support.server import serve

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs Debian's docker-registry")


@dataclass
class Site:
    services: Services
    registry: Any
    kube: KubeServer
    ca: Path
    tls: ssl.SSLContext
    expires: Any
    digest: str
    release_id: str
    buffer: Path


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Site]:
    cert, key, expires = self_signed_certificate(tmp_path, days=20)
    registry = start_registry(tmp_path / "registry", tls=(cert, key))
    request.addfinalizer(registry.stop)  # also when the setup below fails
    store = SqliteStateStore(tmp_path / "state.db")
    store.upsert_sites([make_site("plant-01", reporter=True, endpoint=registry.url)])
    queue = SqliteJobQueue(tmp_path / "queue.db")
    services = bootstrap(Settings(data_dir=tmp_path / "data"), store=store, queue=queue, events=CountingSink())
    use_services(services)
    tls = ssl.create_default_context(cafile=str(cert))
    pushed = push_image(registry.url, "inspection/camera", "1.5.0", verify=tls)
    release_id = push_release(services, tag="1.5.0", digest=pushed.digest)
    move_row(services, release_id, "plant-01", SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at=services.clock.now())
    image = f"{registry.netloc}/inspection/camera"
    with KubeServer() as kube:
        kube.set_pods(
            [
                pod("camera-7d9f-a", f"{image}:1.5.0", f"{image}@{pushed.digest}"),
                pod("camera-7d9f-b", f"{image}:1.5.0", f"{image}@{pushed.digest}"),
                pod(
                    "camera-next-c",
                    f"{image}:1.6.0",
                    "",
                    waiting=("ImagePullBackOff", f'Back-off pulling image "{image}:1.6.0"'),
                ),
                pod(
                    "nginx-0",
                    "mcr.microsoft.com/oss/nginx:1.25",
                    "mcr.microsoft.com/oss/nginx@sha256:" + "1" * 64,
                    owner=None,
                ),
            ]
        )
        buffer = tmp_path / "buffer"
        for name, value in {
            "ACRSYNC_SITE": "plant-01",
            "ACRSYNC_REPORT_TOKEN": issue_report_token(services, "plant-01"),
            "ACRSYNC_LOCAL_REGISTRY": registry.url,
            "ACRSYNC_LOCAL_REGISTRY_CA": str(cert),
            "ACRSYNC_KUBE_API": kube.url,
            "ACRSYNC_AGENT_BUFFER": str(buffer),
        }.items():
            monkeypatch.setenv(name, value)
        try:
            yield Site(services, registry, kube, cert, tls, expires, pushed.digest, release_id, buffer)
        finally:
            use_services(None)
            registry.stop()
            queue.close()
            store.close()


def run(api_url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["agent", "--api-url", api_url, "-o", "json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_the_agent_reports_what_runs_and_whether_the_registry_serves_pulls(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(create_app()) as api:
        code, first = run(api, capsys)
        assert code == 0, first
        assert first["pods"] == 4 and first["sent"] == 1 and first["disconnected_pull"] == "ok" and first["checks"] == 1
        detail = httpx.get(f"{api}/api/sites/plant-01").json()
    [running] = detail["running"]
    assert running["release_id"] == site.release_id and running["pods"] == 2 and running["source"] == "site-agent"
    assert running["workloads"] == [{"namespace": "vision", "kind": "ReplicaSet", "name": "camera-7d9f", "pods": 2}]
    [error] = detail["pull_errors"]
    assert error["reason"] == "ImagePullBackOff" and error["image"].endswith("inspection/camera:1.6.0")
    health = detail["health"]
    assert health["disconnected_pull"] == "ok"
    assert health["tls_expires_at"].startswith(site.expires.isoformat()[:19])
    assert site.kube.requests and site.kube.requests[0].startswith("/api/v1/pods")

    # The config blob goes missing at the site: a pull would fail though the manifest is there.
    manifest = httpx.get(
        f"{site.registry.url}/v2/inspection/camera/manifests/{site.digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        verify=site.tls,
    ).json()
    blob = manifest["config"]["digest"]
    assert httpx.delete(f"{site.registry.url}/v2/inspection/camera/blobs/{blob}", verify=site.tls).status_code == 202
    with serve(create_app()) as api:
        code, second = run(api, capsys)
        assert code == 0 and second["disconnected_pull"] == "failed"
        health = httpx.get(f"{api}/api/sites/plant-01").json()["health"]
    assert health["disconnected_pull"] == "failed" and f"blob {blob}" in health["disconnected_pull_failures"][0]


def test_reports_made_while_the_uplink_is_down_arrive_oldest_first_and_once(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(create_app()) as api:
        assert run(api, capsys)[0] == 0
    down = api  # that server is gone: the uplink is down
    made = []
    for _ in range(3):
        code, result = run(down, capsys)
        assert code == 4 and result["uplink"] is False
        made.append(result["report_id"])
    assert result["buffered"] == 3 and len(list(site.buffer.glob("*.json"))) == 4  # three reports and what to check
    before = site_runtime(site.services, "plant-01")
    with serve(create_app()) as api:
        code, result = run(api, capsys)
    assert code == 0 and result["sent"] == 4 and result["buffered"] == 0 and result["duplicates"] == 0
    after = site_runtime(site.services, "plant-01")
    assert list(after.report_ids[-4:]) == [*made, result["report_id"]]  # oldest first
    assert len(after.report_ids) == len(before.report_ids) + 4
    row = site.services.store.get_site_sync(site.release_id, "plant-01").value
    assert row.receipt_sequence == 1  # one RUNNING receipt, however many reports saw it


def test_the_buffer_is_bounded(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(create_app()) as api:
        pass
    results = [run(api, capsys, "--max-buffered", "2")[1] for _ in range(3)]
    assert [r["buffered"] for r in results] == [1, 2, 2] and results[-1]["dropped"] == 1


def test_a_wrong_token_keeps_the_reports_and_says_so(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACRSYNC_REPORT_TOKEN", "acrsr1.not-this-sites")
    with serve(create_app()) as api:
        code, result = run(api, capsys)
    assert code == 4 and result["buffered"] == 1 and result["sent"] == 0


def test_missing_settings_are_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ACRSYNC_SITE", raising=False)
    monkeypatch.delenv("ACRSYNC_REPORT_TOKEN", raising=False)
    assert main(["agent", "--api-url", "http://127.0.0.1:9"]) == 3
    assert "--site" in capsys.readouterr().err
