"""`acrsync dev --registries real` end to end: real docker-registry processes for the parent and each
site, the parent's notifications bridged into ACR events by the dev API over HTTP (uvicorn), each
site filled from the parent by its syncer over the OCI API, and the worker's real manifest check.

Nothing here is faked: a push through the OCI API into the parent is the only trigger, and the test
drives the workers itself (``process_available``) once the syncers have copied, so no check waits for
a one-minute recheck.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from orchestrations.api import create_app
from orchestrations.api.dev import DevTools
from shared.domain.acr_events import RegistryEvent, decode_event
from shared.domain.names import release_id_for
from shared.domain.observations import ConnectionState
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.errors import NotFound
from shared.local.bridge import DISTRIBUTION_EVENTS_MEDIA_TYPE, acr_events_from_notifications
from shared.local.environment import DevEnvironment, DevOptions, RegistryMode
from shared.local.registries import LocalConnectedRegistries
from shared.local.site_syncer import SyncPass
from tests.support.azurite import free_port
from tests.support.registry import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    PushedManifest,
    _put_manifest,
    _upload_blob,
    push_image,
    push_index,
    sha256_digest,
)

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None, reason="needs Debian's docker-registry (apt-get install docker-registry)"
)

LOGIN_SERVER = "contosoacr.azurecr.io"
DEADLINE_S = 20.0
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
    ]
)
SITES_FILE = f"""\
registry: {LOGIN_SERVER}
simulation:
  allow_short_windows: true
sites:
  # continuous sync; the file's endpoint is replaced by the site's loopback registry
  - name: plant-01
    repositories: ["inspection/*"]
    endpoint: https://plant-01.contoso.example:5000
  # a window opens every minute and lasts a minute: always open, through the scheduled-window path
  - name: plant-02
    repositories: ["inspection/*"]
    schedule: "*/1 * * * *"
    sync_window: PT1M
    message_ttl: PT30M
  # out of scope for inspection/*
  - name: store-0001
    repositories: ["retail/*"]
"""
IN_SCOPE = ("plant-01", "plant-02")

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Dev:
    environment: DevEnvironment
    api: str
    server: uvicorn.Server
    thread: threading.Thread
    data_dir: Path
    stopped: bool = False

    @property
    def parent(self) -> str:
        assert self.environment.registries is not None
        return self.environment.registries.parent.url

    @property
    def trust(self) -> Any:
        """What trusts the site registries' certificate (they serve TLS, as connected registries do)."""
        assert self.environment.tls is not None
        return self.environment.tls.client_context()

    def site_url(self, site: str) -> str:
        assert self.environment.registries is not None
        return self.environment.registries.endpoint(site)

    def release_id(self, repository: str, digest: str) -> str:
        return release_id_for(LOGIN_SERVER, repository, digest)

    def release_ingested(self, repository: str, digest: str) -> None:
        store = self.environment.services.store

        def published() -> bool:
            try:
                return store.is_release_published(self.release_id(repository, digest))
            except NotFound:
                return False

        eventually(published, f"the bridge to register {repository}@{digest}")

    def arrives(self, site: str, repository: str, digest: str) -> None:
        """Wait for the site's syncer to have copied the manifest (woken by the parent's notification)."""
        eventually(
            lambda: holds(self.site_url(site), repository, digest, verify=self.trust) == digest,
            f"{repository} at {site}",
        )

    def sync_now(self, site: str) -> SyncPass:
        """A pass of ``site`` that certainly started after everything pushed so far."""
        assert self.environment.registries is not None
        done = self.environment.registries.sync_now(site)
        assert done is not None and done.completed, f"{site} could not sync now: {done}"
        return done

    def run_checks_until(self, release_id: str, states: dict[str, SyncState]) -> dict[str, Any]:
        store, runtime = self.environment.services.store, self.environment.runtime

        def reached() -> dict[str, Any] | None:
            runtime.process_available()
            rows = {row.value.site: row.value for row in store.list_site_syncs(release_id)}
            return rows if all(rows[site].state is state for site, state in states.items()) else None

        return eventually(reached, f"rows {states}")

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.should_exit = True
        self.thread.join(10)
        self.environment.stop()


def holds(registry: str, repository: str, reference: str, *, verify: Any = True) -> str | None:
    """The Docker-Content-Digest the registry answers for a manifest, asked directly (a site's registry
    over TLS, trusting its certificate: ``verify``)."""
    response = httpx.head(
        f"{registry}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}, verify=verify
    )
    return response.headers.get("docker-content-digest") if response.status_code == 200 else None


def push_untagged_docker_image(registry: str, repository: str) -> PushedManifest:
    """A per-platform child: a Docker schema 2 image pushed by digest only (no tag, so no release)."""
    layer = secrets.token_bytes(48)
    config = json.dumps({"architecture": "arm64", "os": "linux", "rootfs": {"diff_ids": [sha256_digest(layer)]}})
    with httpx.Client(timeout=10.0) as client:
        config_digest = _upload_blob(client, registry, repository, config.encode())
        layer_digest = _upload_blob(client, registry, repository, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": DOCKER_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        return _put_manifest(client, registry, repository, sha256_digest(body), manifest)


def start_dev(data_dir: Path) -> Dev:
    sites_file = data_dir / "sites.yaml"
    sites_file.write_text(SITES_FILE)
    port = free_port()
    environment = DevEnvironment(
        DevOptions(
            port=port, data_dir=data_dir / "data", sites_file=sites_file, registries=RegistryMode.REAL, workers=1
        ),
        environ={},
    )
    try:
        environment.load_sites()
        app = create_app(dev_tools=DevTools(sites=environment.simulation, parent=environment.registries))
        environment.start(runtime=False)  # the test runs the workers' loop itself
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="uvicorn-e2e", daemon=True)
        thread.start()
        eventually(lambda: server.started, "uvicorn to start", timeout=10)
    except BaseException:
        environment.stop()
        raise
    return Dev(environment, f"http://127.0.0.1:{port}", server, thread, data_dir)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    running = start_dev(tmp_path_factory.mktemp("real-registries"))
    try:
        yield running
    finally:
        running.stop()


def test_a_push_into_the_parent_reaches_the_sites_in_scope_and_is_verified_at_each(dev: Dev) -> None:
    store = dev.environment.services.store
    sites = {site.name: site for site in store.list_sites()}
    assert sites["plant-01"].endpoint == dev.site_url("plant-01")  # the file's endpoint was replaced
    assert {sites[name].endpoint for name in sites} == {dev.site_url(name) for name in sites}

    pushed = push_image(dev.parent, "inspection/camera", "1.5.0")
    dev.release_ingested("inspection/camera", pushed.digest)
    for site in IN_SCOPE:
        dev.arrives(site, "inspection/camera", pushed.digest)
    assert dev.sync_now("store-0001").copied == ()  # out of scope: a pass after the push copies nothing
    release_id = dev.release_id("inspection/camera", pushed.digest)
    rows = dev.run_checks_until(release_id, dict.fromkeys(IN_SCOPE, SyncState.VERIFIED))

    release = store.get_release(release_id).value
    assert (release.registry, release.digest, release.tags) == (LOGIN_SERVER, pushed.digest, frozenset({"1.5.0"}))
    assert release.media_type == OCI_MANIFEST
    for site in IN_SCOPE:
        assert rows[site].reason is SyncReason.MANIFEST_PRESENT
        [proof] = [e for e in store.list_evidence(release_id, site=site) if e.state_to is SyncState.VERIFIED]
        assert proof.source is EvidenceSource.OCI_PROBE
        assert proof.details["Docker-Content-Digest"] == pushed.digest
        assert proof.details["endpoint"] == dev.site_url(site)
        assert holds(dev.site_url(site), "inspection/camera", pushed.digest, verify=dev.trust) == pushed.digest
        assert holds(dev.site_url(site), "inspection/camera", "1.5.0", verify=dev.trust) == pushed.digest
    assert (rows["store-0001"].state, rows["store-0001"].reason) == (SyncState.SKIPPED, SyncReason.REPO_NOT_IN_SCOPE)
    assert holds(dev.site_url("store-0001"), "inspection/camera", pushed.digest, verify=dev.trust) is None

    # what the worker's ARM port reports comes from the real syncs: the last one ended after the push
    arm = dev.environment.services.arm
    state = arm.get_connected_registry(sites["plant-01"].connected_registry or "")
    assert state.connection_state in (ConnectionState.ONLINE, ConnectionState.SYNCING)
    assert state.last_sync_time is not None and state.last_sync_time >= release.pushed_at
    assert arm.get_sync_scope(state.token_id or "").repository_patterns == ("inspection/*",)


def test_a_multi_arch_index_arrives_with_its_children_and_only_the_tagged_push_is_a_release(dev: Dev) -> None:
    repository = "inspection/model-runtime"
    children = [push_untagged_docker_image(dev.parent, repository) for _ in range(2)]
    index = push_index(dev.parent, repository, "3.1.0", children, media_type=DOCKER_MANIFEST_LIST)
    dev.release_ingested(repository, index.digest)
    dev.arrives("plant-01", repository, index.digest)
    rows = dev.run_checks_until(dev.release_id(repository, index.digest), {"plant-01": SyncState.VERIFIED})
    assert rows["plant-01"].evidence_source is EvidenceSource.OCI_PROBE
    for manifest in (index, *children):
        assert holds(dev.site_url("plant-01"), repository, manifest.digest, verify=dev.trust) == manifest.digest
    store = dev.environment.services.store
    for child in children:  # the untagged children were acknowledged, not released
        with pytest.raises(NotFound):
            store.get_release(dev.release_id(repository, child.digest))


def test_an_offline_site_copies_nothing_and_a_deletion_in_the_parent_withdraws_what_it_missed(dev: Dev) -> None:
    registries, store = dev.environment.registries, dev.environment.services.store
    assert registries is not None
    arm = dev.environment.services.arm
    assert isinstance(arm, LocalConnectedRegistries)
    offline = httpx.post(f"{dev.api}/api/dev/sites/plant-02/offline")
    assert offline.status_code == 200
    try:
        connected_registry = next(s for s in store.list_sites() if s.name == "plant-02").connected_registry
        assert connected_registry is not None
        assert arm.get_connected_registry(connected_registry).connection_state is ConnectionState.OFFLINE

        pushed = push_image(dev.parent, "inspection/probe", "0.9.0")
        dev.release_ingested("inspection/probe", pushed.digest)
        dev.arrives("plant-01", "inspection/probe", pushed.digest)
        assert registries.sync_now("plant-02") is None  # offline: no pass, not even on demand
        release_id = dev.release_id("inspection/probe", pushed.digest)
        rows = dev.run_checks_until(release_id, {"plant-01": SyncState.VERIFIED})
        assert (rows["plant-02"].state, rows["plant-02"].reason) == (SyncState.PENDING, SyncReason.SITE_OFFLINE)
        assert holds(dev.site_url("plant-02"), "inspection/probe", pushed.digest, verify=dev.trust) is None

        deleted = httpx.delete(f"{dev.parent}/v2/inspection/probe/manifests/{pushed.digest}")
        assert deleted.status_code == 202

        def withdrawn() -> bool:
            return store.get_site_sync(release_id, "plant-02").value.state is SyncState.WITHDRAWN

        eventually(withdrawn, "the deletion to withdraw the release at plant-02")
        assert store.get_release(release_id).value.withdrawn_at is not None
        assert store.get_site_sync(release_id, "plant-01").value.state is SyncState.VERIFIED  # it is still there
    finally:
        assert httpx.post(f"{dev.api}/api/dev/sites/plant-02/online").status_code == 200
    back = eventually(lambda: registries.sync_now("plant-02"), "plant-02 to sync again")
    assert (
        back.completed and holds(dev.site_url("plant-02"), "inspection/probe", pushed.digest, verify=dev.trust) is None
    )


def test_the_bridge_ignores_what_is_no_release_and_refuses_what_is_not_a_notification(dev: Dev) -> None:
    url = f"{dev.api}/api/dev/registry-notifications"
    digest = sha256_digest(b"x")
    manifest = {"mediaType": OCI_MANIFEST, "digest": digest, "repository": "inspection/camera"}
    envelope = {
        "events": [
            {"id": "pull-1", "action": "pull", "target": {**manifest, "tag": "1.5.0"}},
            {"id": "by-digest-1", "action": "push", "target": manifest},  # an index's child: no release
            {"id": "blob-1", "action": "push", "target": {**manifest, "mediaType": "application/octet-stream"}},
            {"id": "delete-unknown", "action": "delete", "target": {"digest": digest, "repository": "inspection/x"}},
        ]
    }
    headers = {"content-type": DISTRIBUTION_EVENTS_MEDIA_TYPE}
    answer = httpx.post(url, content=json.dumps(envelope), headers=headers)
    assert answer.status_code == 200 and answer.json() == {"results": [], "ignored": 4}
    assert httpx.post(url, content=b"{not json", headers=headers).json()["code"] == "MALFORMED_JSON"
    assert httpx.post(url, content=b'{"events": 1}', headers=headers).json()["code"] == "MALFORMED_EVENT"
    assert httpx.post(url, content=b"{}", headers={"content-type": "text/plain"}).status_code == 400


def test_a_registry_push_becomes_the_acr_event_event_grid_would_deliver() -> None:
    """The envelope docker-registry 2.8 posts for a push by tag (recorded), through the bridge and
    the ingress's own decoder."""
    digest = "sha256:92c9fa4ce1d714b6bf3d7de482a9e218011aaaf1bc42d519aa0fec825aa8eab0"
    recorded = {
        "id": "1729bd00-5541-413a-b69d-1d832b3ebe21",
        "timestamp": "2026-11-27T07:54:49.648670052Z",
        "action": "push",
        "target": {
            "mediaType": OCI_MANIFEST,
            "size": 400,
            "digest": digest,
            "length": 400,
            "repository": "inspection/camera",
            "url": f"http://127.0.0.1:56447/v2/inspection/camera/manifests/{digest}",
            "tag": "1.0",
            "references": [],
        },
        "request": {
            "id": "72c913d3-b8ae-4030-b68c-f80b5670117d",
            "addr": "127.0.0.1:42586",
            "host": "127.0.0.1:56447",
            "method": "PUT",
            "useragent": "skopeo/1.9.3",
        },
        "actor": {},
        "source": {"addr": "vm:56447", "instanceID": "d51972ca-fbf3-421d-a316-4d14d5100c4b"},
    }
    [event] = acr_events_from_notifications({"events": [recorded]}, login_server=LOGIN_SERVER)
    assert event["topic"].endswith("/providers/Microsoft.ContainerRegistry/registries/contosoacr")
    assert event["subject"] == "inspection/camera:1.0"
    assert event["eventType"] == "Microsoft.ContainerRegistry.ImagePushed"
    assert event["data"]["request"]["host"] == LOGIN_SERVER and "actor" not in event["data"]
    decoded = decode_event(event)
    assert isinstance(decoded, RegistryEvent)
    assert (decoded.event_id, decoded.registry, decoded.repository, decoded.digest, decoded.tag) == (
        recorded["id"],
        LOGIN_SERVER,
        "inspection/camera",
        digest,
        "1.0",
    )
    assert (decoded.media_type, decoded.size, decoded.is_edge) == (OCI_MANIFEST, 400, False)
    assert decoded.occurred_at == datetime(2026, 11, 27, 7, 54, 49, 648670, tzinfo=UTC)
    # the registry resends a notification it could not deliver: the same event id, so a redelivery
    assert acr_events_from_notifications({"events": [recorded]}, login_server=LOGIN_SERVER)[0]["id"] == event["id"]


def test_each_sites_agent_reports_what_runs_checks_its_registry_and_catches_up_after_an_outage(dev: Dev) -> None:
    environment = dev.environment
    agents, workloads = environment.site_agents, environment.workloads
    assert agents is not None
    workloads.roll_delay = timedelta(0)  # the test does not wait for the workloads to roll
    pushed = push_image(dev.parent, "inspection/tracker", "2.0.0")
    dev.release_ingested("inspection/tracker", pushed.digest)
    for site in IN_SCOPE:
        dev.arrives(site, "inspection/tracker", pushed.digest)
    release_id = dev.release_id("inspection/tracker", pushed.digest)
    dev.run_checks_until(release_id, dict.fromkeys(IN_SCOPE, SyncState.VERIFIED))

    runs = agents.run_once()  # the real `acrsync agent`, once per site, against the dev API over HTTP
    for site in IN_SCOPE:
        assert runs[site].uplink and runs[site].sent == 1 and runs[site].disconnected_pull.value == "ok", runs[site]
        detail = httpx.get(f"{dev.api}/api/sites/{site}").json()
        running = {image["digest"]: image for image in detail["running"]}
        assert running[pushed.digest]["release_id"] == release_id and running[pushed.digest]["source"] == "site-agent"
        assert detail["health"]["disconnected_pull"] == "ok" and detail["health"]["last_report_at"]
        assert environment.tls is not None  # the site registry's own certificate, read in the handshake
        assert detail["health"]["tls_expires_at"].startswith(environment.tls.expires_at.isoformat()[:19])
        # the check read the site's own registry: the manifest by digest and its config blob
        assert holds(dev.site_url(site), "inspection/tracker", pushed.digest, verify=dev.trust) == pushed.digest

    environment.simulation.set_online("plant-02", False)  # its uplink goes down: reports wait at the site
    try:
        down = [agents.run_once()["plant-02"] for _ in range(2)]
        assert [run.buffered for run in down] == [1, 2] and not down[-1].uplink
    finally:
        environment.simulation.set_online("plant-02", True)
    before = environment.services.store.get_site_runtime("plant-02").value.report_ids
    back = agents.run_once()["plant-02"]
    assert back.uplink and back.sent == 3 and back.buffered == 0 and back.duplicates == 0
    after = environment.services.store.get_site_runtime("plant-02").value.report_ids
    assert list(after[-3:]) == [*(run.report_id for run in down), back.report_id]  # oldest first
    assert len(set(after)) == len(after) == len(before) + 3  # nothing lost, nothing doubled


def test_stopping_ends_every_registry_process_and_syncer(dev: Dev) -> None:
    registries = dev.environment.registries
    assert registries is not None
    processes = [server.process for server in registries.servers()]
    syncers = registries.syncers()
    assert len(processes) == 4 and all(p is not None and p.poll() is None for p in processes)
    dev.stop()
    assert all(p is not None and p.poll() is not None for p in processes)
    assert not any(syncer.alive for syncer in syncers)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("acrsync-syncer-", "uvicorn-e2e"))]
    assert not _registry_processes_under(dev.data_dir)


def _registry_processes_under(folder: Path) -> list[str]:
    """Every docker-registry process whose config lives under ``folder`` (Linux /proc)."""
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        line = b" ".join(command)
        if state != "Z" and b"docker-registry" in command[0] and str(folder).encode() in line:
            found.append(f"{entry.name}: {line.decode(errors='replace')}")
    return found
