"""The cloud-side observers through the real Azure SDKs against loopback servers: Container Insights
with ``azure-monitor-query``'s ``LogsQueryClient`` (the KQL names the documented tables and columns;
rows become running containers and pull errors; partial results and throttling), and site health
with ``azure-mgmt-hybridkubernetes`` and ``azure-mgmt-kubernetesconfiguration-extensions`` against
the loopback ARM server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.arc import ArcHealthReader
from shared.adapters.container_insights import ContainerInsightsObserver
from shared.bootstrap import bootstrap
from shared.config import Settings
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.domain.workloads import ClusterConnectivity, ExtensionState, ObservationSource, running_images
from shared.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from shared.ports import StateStore
from shared.services.workloads import observe_sites, runtime_view, site_runtime
from tests.builders import T0, make_site, move_row, push_release, random_digest
from tests.fakes import CountingSink, FakeClock, StaticTokenCredential
from tests.support.arm_server import ArmServer
from tests.support.loganalytics_server import LogAnalyticsServer

SUBSCRIPTION = "6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43"
CLUSTER = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-plants/providers/Microsoft.Kubernetes/connectedClusters/plant-01"
)
WORKSPACE = "6f1c2d3e-0000-4000-8000-00000000abcd"
LOCAL = "plant-01.registry.local:8443"


@pytest.fixture
def logs() -> Iterator[LogAnalyticsServer]:
    with LogAnalyticsServer() as server:
        yield server


@pytest.fixture
def observer(logs: LogAnalyticsServer) -> Iterator[ContainerInsightsObserver]:
    client = ContainerInsightsObserver(StaticTokenCredential(), endpoint=logs.endpoint, enforce_https=False)
    yield client
    client.close()


def container_row(pod: str, digest: str, *, status: str = "running", reason: str = "", tag: str = "1.5.0") -> dict:
    return {
        "Kind": "container",
        "Namespace": "vision",
        "Pod": pod,
        "ContainerName": f"0b6e1c2d-uid/{pod.split('-', maxsplit=1)[0]}",
        "ControllerKind": "ReplicaSet",
        "ControllerName": "camera-7d9f",
        "ContainerStatus": status,
        "Reason": reason,
        "Repository": LOCAL,
        "Image": "inspection/camera",
        "ImageTag": tag,
        "ImageID": digest,
        "Count": 1,
    }


def test_the_query_names_the_documented_tables_and_columns(
    logs: LogAnalyticsServer, observer: ContainerInsightsObserver
) -> None:
    site = make_site("plant-01", cluster_id=CLUSTER, log_analytics_workspace_id=WORKSPACE)
    logs.answer(f"workspaces/{WORKSPACE}", [])
    observer.observe(site, now=T0)
    [sent] = logs.queries
    assert sent.target == f"workspaces/{WORKSPACE}" and sent.authorization == "Bearer test-token"
    kql = sent.query
    for name in (
        "KubePodInventory",
        "ContainerInventory",
        "KubeEvents",
        "ContainerID",
        "ImageID",
        "ContainerStatusReason",
        "ControllerKind",
        "ControllerName",
        "KubeEventType",
        "ObjectKind",
        "arg_max",
    ):
        assert name in kql, name
    assert "join kind=leftouter images on ContainerID" in kql
    assert f'_ResourceId =~ "{CLUSTER}"' in kql  # a shared workspace: only this site's cluster
    assert sent.prefer and "wait=60" in sent.prefer  # the server timeout


def test_running_containers_and_pull_errors_come_from_the_rows(
    logs: LogAnalyticsServer, observer: ContainerInsightsObserver
) -> None:
    site = make_site("plant-01", cluster_id=CLUSTER, log_analytics_workspace_id=WORKSPACE)
    digest = random_digest()
    last = (T0 - timedelta(minutes=3)).isoformat()
    logs.answer(
        f"workspaces/{WORKSPACE}",
        [
            container_row("camera-a", digest),
            container_row("camera-b", digest),
            container_row("camera-c", "", status="waiting", reason="ImagePullBackOff", tag="1.6.0"),
            container_row("camera-d", digest, status="terminated"),
            {
                "Kind": "event",
                "Namespace": "vision",
                "Pod": "camera-c",
                "Reason": "Failed",
                "Count": 4,
                "Message": f'Failed to pull image "{LOCAL}/inspection/camera:1.6.0": manifest unknown',
                "FirstSeen": (T0 - timedelta(hours=1)).isoformat(),
                "LastSeen": last,
            },
        ],
    )
    observation = observer.observe(site, now=T0)
    assert observation.source is ObservationSource.CONTAINER_INSIGHTS and observation.observed_at == T0
    assert observation.containers is not None
    assert [(c.pod, c.container, c.digest) for c in observation.containers] == [
        ("camera-a", "camera", digest),
        ("camera-b", "camera", digest),
    ]
    [image] = running_images(site, observation.containers, source=observation.source, at=T0)
    assert (image.repository, image.digest, image.tags, image.pods) == ("inspection/camera", digest, ("1.5.0",), 2)
    assert image.workloads[0].name == "camera-7d9f" and image.workloads[0].kind == "ReplicaSet"
    errors = {(e.reason, e.image): e for e in observation.pull_errors}
    assert set(errors) == {
        ("ImagePullBackOff", f"{LOCAL}/inspection/camera:1.6.0"),
        ("Failed", f"{LOCAL}/inspection/camera:1.6.0"),
    }
    failed = errors[("Failed", f"{LOCAL}/inspection/camera:1.6.0")]
    assert (
        failed.count == 4 and failed.first_seen_at == T0 - timedelta(hours=1) and "manifest unknown" in failed.message
    )


def test_a_cluster_without_a_workspace_is_queried_in_resource_context(
    logs: LogAnalyticsServer, observer: ContainerInsightsObserver
) -> None:
    site = make_site("plant-01", cluster_id=CLUSTER)
    logs.answer(CLUSTER, [container_row("camera-a", random_digest())])
    observation = observer.observe(site, now=T0)
    assert observation.containers and len(observation.containers) == 1
    [sent] = logs.queries
    assert sent.target.lower() == CLUSTER.strip("/").lower() and "_ResourceId =~" not in sent.query


def test_a_partial_result_is_used_as_far_as_it_goes(
    logs: LogAnalyticsServer, observer: ContainerInsightsObserver
) -> None:
    site = make_site("plant-01", log_analytics_workspace_id=WORKSPACE)
    logs.answer(
        f"workspaces/{WORKSPACE}",
        [container_row("camera-a", random_digest())],
        partial_error={"code": "PartialError", "message": "query result limits were exceeded", "details": []},
    )
    observation = observer.observe(site, now=T0)
    assert observation.containers and len(observation.containers) == 1


def test_throttling_that_persists_is_transient_and_a_refusal_is_permanent(
    logs: LogAnalyticsServer, observer: ContainerInsightsObserver
) -> None:
    site = make_site("plant-01", log_analytics_workspace_id=WORKSPACE)
    logs.answer(f"workspaces/{WORKSPACE}", [])
    logs.fail(f"workspaces/{WORKSPACE}", 429, times=10, headers={"Retry-After": "0"})
    with pytest.raises(UpstreamUnavailable):
        observer.observe(site, now=T0)
    assert len(logs.queries) == 3  # the first try and two retries: a sweep does not wait on a throttled workspace
    other = make_site("plant-02", log_analytics_workspace_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotFound):  # the workspace does not exist (404 PathNotFoundError)
        observer.observe(other, now=T0)
    with pytest.raises(UpstreamRejected):
        observer.observe(make_site("plant-03"), now=T0)


def test_throttling_that_passes_is_retried_by_the_client(
    logs: LogAnalyticsServer, observer: ContainerInsightsObserver
) -> None:
    site = make_site("plant-01", log_analytics_workspace_id=WORKSPACE)
    logs.answer(f"workspaces/{WORKSPACE}", [container_row("camera-a", random_digest())])
    logs.fail(f"workspaces/{WORKSPACE}", 429, times=1, headers={"Retry-After": "0"})
    assert observer.observe(site, now=T0).containers
    assert len(logs.queries) == 2


# -- Arc health -------------------------------------------------------------------------------


EXTENSIONS = f"{CLUSTER}/providers/Microsoft.KubernetesConfiguration/extensions"


@pytest.fixture
def arm() -> Iterator[ArmServer]:
    with ArmServer(api_versions={"2026-05-01", "2025-03-01"}) as server:
        yield server


@pytest.fixture
def arc(arm: ArmServer) -> Iterator[ArcHealthReader]:
    reader = ArcHealthReader(StaticTokenCredential(), base_url=arm.base_url, enforce_https=False, retry_total=0)
    yield reader
    reader.close()


def cluster(status: str) -> dict:
    return {
        "id": CLUSTER,
        "name": "plant-01",
        "type": "microsoft.kubernetes/connectedclusters",
        "location": "westeurope",
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "agentPublicKeyCertificate": "",
            "connectivityStatus": status,
            "lastConnectivityTime": "2026-11-24T09:40:00Z",
            "agentVersion": "1.21.10",
            "kubernetesVersion": "1.30.4",
            "provisioningState": "Succeeded",
        },
    }


def extension(state: str, *, version: str = "0.11.0", error: dict | None = None, statuses: list | None = None) -> dict:
    return {
        "id": f"{EXTENSIONS}/connected-registry",
        "name": "connected-registry",
        "type": "Microsoft.KubernetesConfiguration/extensions",
        "properties": {
            "extensionType": "microsoft.containerregistry.connectedregistry",
            "provisioningState": state,
            "currentVersion": version,
            "releaseTrain": "preview",
            "statuses": statuses or [],
            "errorInfo": error,
            "configurationProtectedSettings": {"connectionString": ""},
        },
    }


def test_a_healthy_site_reads_connected_with_its_extension(arm: ArmServer, arc: ArcHealthReader) -> None:
    arm.put(CLUSTER, cluster("Connected"))
    monitoring = {**extension("Succeeded"), "name": "azuremonitor-containers"}
    monitoring["properties"] = {**monitoring["properties"], "extensionType": "microsoft.azuremonitor.containers"}
    arm.put_page(EXTENSIONS, {"value": [monitoring, extension("Succeeded")]})
    health = arc.read_health(make_site("plant-01", cluster_id=CLUSTER), now=T0)
    assert health.cluster_connectivity is ClusterConnectivity.CONNECTED
    assert health.extension is not None and health.extension.state is ExtensionState.SUCCEEDED
    assert health.extension.version == "0.11.0" and health.extension.errors == ()
    versions = {request.api_version for request in arm.requests}
    assert versions == {"2026-05-01", "2025-03-01"}


def test_an_offline_cluster_and_a_failed_extension_say_why(arm: ArmServer, arc: ArcHealthReader) -> None:
    arm.put(CLUSTER, cluster("Offline"))
    failed = extension(
        "Failed",
        error={"code": "ExtensionOperationFailed", "message": "helm install failed: PVC not bound"},
        statuses=[{"code": "InstallationFailed", "level": "Error", "message": "pvc connected-registry-pvc Pending"}],
    )
    arm.put_page(EXTENSIONS, {"value": [failed]})
    health = arc.read_health(make_site("plant-01", cluster_id=CLUSTER), now=T0)
    assert health.cluster_connectivity is ClusterConnectivity.OFFLINE
    assert health.extension is not None and health.extension.state is ExtensionState.FAILED
    assert health.extension.errors == (
        "ExtensionOperationFailed helm install failed: PVC not bound",
        "InstallationFailed pvc connected-registry-pvc Pending",
    )


def test_a_cluster_without_the_extension_and_a_cluster_that_is_gone(arm: ArmServer, arc: ArcHealthReader) -> None:
    arm.put(CLUSTER, cluster("Connected"))
    arm.put_page(EXTENSIONS, {"value": []})
    health = arc.read_health(make_site("plant-01", cluster_id=CLUSTER), now=T0)
    assert health.extension is not None and health.extension.state is ExtensionState.NOT_INSTALLED
    gone = CLUSTER.replace("plant-01", "plant-09")
    with pytest.raises(NotFound):
        arc.read_health(make_site("plant-09", cluster_id=gone), now=T0)


# -- the sweep --------------------------------------------------------------------------------


def test_the_sweep_observes_each_site_that_names_a_source(
    store: StateStore,
    tmp_path: Path,
    logs: LogAnalyticsServer,
    observer: ContainerInsightsObserver,
    arm: ArmServer,
    arc: ArcHealthReader,
) -> None:
    clock = FakeClock(T0)
    store.upsert_sites(
        [make_site("plant-01", cluster_id=CLUSTER, log_analytics_workspace_id=WORKSPACE), make_site("shop-9")]
    )
    services = bootstrap(
        Settings(data_dir=tmp_path),
        store=store,
        clock=clock,
        events=CountingSink(),
        workload_observer=observer,
        cluster_health=arc,
    )
    digest = random_digest()
    release_id = push_release(services, tag="1.5.0", digest=digest)
    move_row(services, release_id, "plant-01", SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at=T0)
    logs.answer(f"workspaces/{WORKSPACE}", [container_row("camera-a", digest), container_row("camera-b", digest)])
    arm.put(CLUSTER, cluster("Connected"))
    arm.put_page(EXTENSIONS, {"value": [extension("Succeeded")]})
    clock.advance(minutes=5)

    swept = observe_sites(services)
    assert (swept.sites, swept.observed, swept.failed, swept.log_queries, swept.arm_reads) == (1, 2, 0, 1, 2)
    view = runtime_view(site_runtime(services, "plant-01"))
    [running] = view["running"]
    assert running["release_id"] == release_id and running["pods"] == 2 and running["source"] == "container-insights"
    assert view["health"]["cluster_connectivity"] == "Connected" and view["health"]["extension"]["state"] == "Succeeded"
    row = store.get_site_sync(release_id, "plant-01").value
    assert row.running_pods == 2 and row.running_since == clock.now()
    [record] = [e for e in store.list_evidence(release_id, site="plant-01") if e.details.get("running")]
    assert record.source is EvidenceSource.CONTAINER_INSIGHTS

    arm.remove(CLUSTER)  # the cluster is gone: its health is not read, the rest still is
    assert observe_sites(services).failed == 1
