"""What-runs benchmark: what one sweep's cloud-side observation of S sites costs, and what an agent's
buffer does while the uplink is down.

1. **Observation.** S sites, each naming an Arc cluster in one shared Log Analytics workspace, each
   holding one synced release and running it in three pods. A loopback Log Analytics server answers the
   real ``LogsQueryClient`` and a loopback ARM server the real hybrid-Kubernetes and extensions clients.
   ``observe_sites`` runs twice (the first sighting, which signs a RUNNING receipt per site, then a steady
   sweep that changes nothing) against a raw baseline in the same run: the same SDK calls per site (one
   query, two ARM reads) and nothing else. Prints the queries and ARM reads per sweep, seconds, and the
   ratio to the baseline.
2. **Buffering.** ``acrsync agent`` runs against a loopback Kubernetes API while the API is down (N
   runs), then once with it up: reports buffered, delivered, doubled (0 expected) and dropped.

    .venv/bin/python bench/observe.py                   # S = 200, N = 5
    .venv/bin/python bench/observe.py --sites 50 --offline-runs 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrations.api import create_app
from shared.adapters.arc import ArcHealthReader
from shared.adapters.container_insights import ContainerInsightsObserver, site_query
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.agent import run_agent, settings_from_environ
from shared.bootstrap import bootstrap, use_services
from shared.config import Settings
from shared.domain.states import SyncReason, SyncState
from shared.services.workloads import issue_report_token, observe_sites, site_runtime
from tests.builders import make_site, move_row, push_release, random_digest
from tests.fakes import CountingSink, StaticTokenCredential
from tests.support.arm_server import ArmServer
from tests.support.kube_server import KubeServer, pod
from tests.support.loganalytics_server import LogAnalyticsServer
from tests.support.server import serve

SUBSCRIPTION = "6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43"
WORKSPACE = "6f1c2d3e-0000-4000-8000-00000000abcd"


def cluster_of(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-sites/providers/Microsoft.Kubernetes/connectedClusters/{name}"
    )


def serve_site(logs: LogAnalyticsServer, arm: ArmServer, name: str, digest: str) -> None:
    cluster = cluster_of(name)
    rows = [
        {
            "Kind": "container",
            "Namespace": "vision",
            "Pod": f"camera-{n}",
            "ContainerName": "uid/camera",
            "ControllerKind": "ReplicaSet",
            "ControllerName": "camera-7d9f",
            "ContainerStatus": "running",
            "Repository": f"{name}.registry.local",
            "Image": "inspection/camera",
            "ImageTag": "1.5.0",
            "ImageID": digest,
        }
        for n in range(3)
    ]
    # One workspace for the fleet: every site's query (filtered to its cluster) gets these rows.
    logs.answer(f"workspaces/{WORKSPACE}", rows)
    arm.put(
        cluster,
        {
            "id": cluster,
            "name": name,
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "properties": {"agentPublicKeyCertificate": "", "connectivityStatus": "Connected"},
        },
    )
    arm.put_page(
        f"{cluster}/providers/Microsoft.KubernetesConfiguration/extensions",
        {
            "value": [
                {
                    "id": f"{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/cr",
                    "name": "cr",
                    "properties": {
                        "extensionType": "microsoft.containerregistry.connectedregistry",
                        "provisioningState": "Succeeded",
                        "currentVersion": "0.11.0",
                    },
                }
            ]
        },
    )


def observation(args: argparse.Namespace, workdir: Path) -> None:
    names = [f"plant-{index:04d}" for index in range(args.sites)]
    with LogAnalyticsServer() as logs, ArmServer(api_versions={"2026-05-01", "2025-03-01"}) as arm:
        observer = ContainerInsightsObserver(StaticTokenCredential(), endpoint=logs.endpoint, enforce_https=False)
        health = ArcHealthReader(StaticTokenCredential(), base_url=arm.base_url, enforce_https=False, retry_total=0)
        store = SqliteStateStore(workdir / "state.db")
        store.upsert_sites(
            [make_site(name, cluster_id=cluster_of(name), log_analytics_workspace_id=WORKSPACE) for name in names]
        )
        services = bootstrap(
            Settings(data_dir=workdir),
            store=store,
            queue=SqliteJobQueue(workdir / "queue.db"),
            events=CountingSink(),
            workload_observer=observer,
            cluster_health=health,
        )
        digest = random_digest()
        release_id = push_release(services, tag="1.5.0", digest=digest)
        for name in names:
            move_row(
                services, release_id, name, SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at=services.clock.now()
            )
            serve_site(logs, arm, name, digest)

        def raw() -> float:
            started = time.perf_counter()
            for site in store.list_sites():
                observer._client.query_workspace(WORKSPACE, site_query(site), timespan=None, enforce_https=False)
                health.read_health(site, now=services.clock.now())
            return time.perf_counter() - started

        raw_seconds = min(raw() for _ in range(2))
        timings = []
        for label in ("first sighting", "steady"):
            before = len(logs.queries), len(arm.requests)
            started = time.perf_counter()
            swept = observe_sites(services)
            seconds = time.perf_counter() - started
            queries, reads = len(logs.queries) - before[0], len(arm.requests) - before[1]
            assert swept.failed == 0 and swept.observed == 2 * args.sites, swept
            timings.append((label, seconds, queries, reads))
        receipts = sum(store.get_site_sync(release_id, name).value.receipt_sequence for name in names)
        assert receipts == args.sites and all(site_runtime(services, name).running for name in names)
        print(
            f"observation: {args.sites} sites in one workspace, real LogsQueryClient and ARM clients on loopback; "
            f"raw SDK calls alone (1 query + 2 ARM reads per site) {raw_seconds:.2f} s"
        )
        print(f"{'sweep':>15} {'seconds':>8} {'queries':>8} {'arm reads':>9} {'ms/site':>8} {'vs raw':>7}")
        for label, seconds, queries, reads in timings:
            per_site = 1000 * seconds / args.sites
            print(f"{label:>15} {seconds:8.2f} {queries:8} {reads:9} {per_site:8.1f} {seconds / raw_seconds:7.2f}")
        steady = timings[-1]
        print(
            f"observe: sites={args.sites} queries_per_sweep={steady[2]} arm_reads_per_sweep={steady[3]} "
            f"steady_vs_raw={steady[1] / raw_seconds:.2f} running_receipts={receipts}"
        )
        observer.close()
        health.close()
        services.close()


def buffering(args: argparse.Namespace, workdir: Path) -> None:
    store = SqliteStateStore(workdir / "agent-state.db")
    store.upsert_sites([make_site("mine-07", reporter=True)])
    services = bootstrap(
        Settings(data_dir=workdir / "agent-data"),
        store=store,
        queue=SqliteJobQueue(workdir / "agent-queue.db"),
        events=CountingSink(),
    )
    use_services(services)
    image = "mine-07.registry.local/inspection/camera"
    with KubeServer() as kube:
        kube.set_pods([pod("camera-a", f"{image}:1.5.0", f"{image}@{random_digest()}")])
        environ = {
            "ACRSYNC_SITE": "mine-07",
            "ACRSYNC_REPORT_TOKEN": issue_report_token(services, "mine-07"),
            "ACRSYNC_KUBE_API": kube.url,
            "ACRSYNC_AGENT_BUFFER": str(workdir / "buffer"),
            "ACRSYNC_AGENT_MAX_BUFFERED": str(args.max_buffered),
        }
        with serve(create_app()) as api:
            pass  # that server is gone now: the uplink is down
        down = [
            run_agent(settings_from_environ({**os.environ, **environ, "ACRSYNC_API_URL": api}))
            for _ in range(args.offline_runs)
        ]
        with serve(create_app()) as api:
            up = run_agent(settings_from_environ({**os.environ, **environ, "ACRSYNC_API_URL": api}))
    made = args.offline_runs + 1
    kept = site_runtime(services, "mine-07").report_ids
    doubled = len(kept) - len(set(kept))
    print(f"buffering: {args.offline_runs} runs with the uplink down (buffer limit {args.max_buffered}), then one up")
    print(
        f"agent: made={made} buffered_while_down={down[-1].buffered} delivered={up.sent} accepted={len(kept)} "
        f"doubled={doubled} dropped={sum(run.dropped for run in down) + up.dropped} left={up.buffered}"
    )
    use_services(None)
    services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--offline-runs", type=int, default=5)
    parser.add_argument("--max-buffered", type=int, default=288)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        observation(args, Path(tmp))
        buffering(args, Path(tmp))


if __name__ == "__main__":
    main()
