"""Simulated workloads for ``acrsync dev``: what each simulated site's cluster runs, and its health.

Each site runs two pods of one Deployment per repository it holds, and rolls them to the newest
release it holds :data:`ROLL_DELAY` after that release arrived (as a GitOps agent at the site
would). An offline site keeps running what it ran and reports nothing new (its cluster shows
Offline). ``acrsync dev site pull-error NAME IMAGE`` makes a site's next observations show that
image failing to pull (``ImagePullBackOff``), as the kubelet would while nothing fixes it.

It answers as both cloud-side ports (:class:`~shared.ports.WorkloadObserver` and
:class:`~shared.ports.ClusterHealthReader`), so the sweeper records it exactly as it records
Container Insights and ARM in Azure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.model import Site, SiteSync
from shared.domain.states import READY_STATES
from shared.domain.workloads import (
    ClusterConnectivity,
    ExtensionHealth,
    ExtensionState,
    ObservationSource,
    PullError,
    RegistryCluster,
    RunningContainer,
    SiteObservation,
)

ROLL_DELAY = timedelta(seconds=15)
PODS_PER_WORKLOAD = 2
EXTENSION_VERSION = "0.11.0"
NAMESPACE = "apps"
SIMULATED_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def simulated_cluster_id(site: str) -> str:
    """The Arc cluster id a simulated site gets when its sites file names none."""
    return (
        f"/subscriptions/{SIMULATED_SUBSCRIPTION}/resourceGroups/acrsync-simulated/providers"
        f"/Microsoft.Kubernetes/connectedClusters/{site}"
    )


@dataclass(frozen=True)
class _Injected:
    image: str
    since: datetime


class SimulatedWorkloads:
    """The simulated sites' clusters (thread-safe)."""

    def __init__(
        self,
        rows: Callable[[str], list[SiteSync]],
        is_online: Callable[[str], bool],
        now: Callable[[], datetime],
        *,
        registry_host: Callable[[str], str] | None = None,
    ) -> None:
        self._rows = rows
        self._is_online = is_online
        self._now = now
        self._registry_host = registry_host or (lambda site: f"{site}.registry.local")
        self.roll_delay = ROLL_DELAY  # how long after a release arrives the site's workloads run it
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, SiteSync]] = {}  # site -> repository -> the row it runs
        self._pull_errors: dict[str, list[_Injected]] = {}

    def inject_pull_error(self, site: str, image: str) -> None:
        with self._lock:
            self._pull_errors.setdefault(site, []).append(_Injected(image, self._now()))

    def containers(self, site: str, *, now: datetime) -> tuple[RunningContainer, ...]:
        """What the site's cluster runs at ``now``: an online site first rolls to what it holds; an
        offline one keeps running what it ran."""
        with self._lock:
            running = self._running.setdefault(site, {})
            if self._is_online(site):
                for row in self._rows(site):
                    arrived = row.verified_at or row.synced_at
                    if row.state not in READY_STATES or arrived is None or now - arrived < self.roll_delay:
                        continue
                    current = running.get(row.repository)
                    if current is None or row.pushed_at > current.pushed_at:
                        running[row.repository] = row
            return tuple(
                RunningContainer(
                    namespace=NAMESPACE,
                    pod=f"{_workload(repository)}-{row.digest[7:13]}-{index}",
                    container=_workload(repository),
                    image=f"{self._registry_host(site)}/{repository}",
                    digest=row.digest,
                    workload_kind="Deployment",
                    workload_name=_workload(repository),
                )
                for repository, row in sorted(running.items())
                for index in range(PODS_PER_WORKLOAD)
            )

    def pull_errors(self, site: str, *, now: datetime) -> tuple[PullError, ...]:
        with self._lock:
            injected = list(self._pull_errors.get(site, []))
        return tuple(
            PullError(
                image=item.image,
                reason="ImagePullBackOff",
                message=f'Back-off pulling image "{item.image}"',
                count=max(1, int((now - item.since).total_seconds() // 30) + 1),
                first_seen_at=item.since,
                last_seen_at=now,
                source=ObservationSource.SIMULATED,
            )
            for item in injected
        )

    def observe(self, site: Site, *, now: datetime) -> SiteObservation:
        if not self._is_online(site.name):
            # Offline: nothing reaches the cloud. What it ran stays recorded as last seen.
            return SiteObservation(site=site.name, source=ObservationSource.SIMULATED, observed_at=now)
        return SiteObservation(
            site=site.name,
            source=ObservationSource.SIMULATED,
            observed_at=now,
            containers=self.containers(site.name, now=now),
            pull_errors=self.pull_errors(site.name, now=now),
        )

    def list_registry_clusters(self, resource_group_id: str) -> list[RegistryCluster]:
        return []  # the simulated clusters are found by their sites, not discovered

    def read_health(self, site: Site, *, now: datetime) -> SiteObservation:
        online = self._is_online(site.name)
        return SiteObservation(
            site=site.name,
            source=ObservationSource.SIMULATED,
            observed_at=now,
            cluster_connectivity=ClusterConnectivity.CONNECTED if online else ClusterConnectivity.OFFLINE,
            extension=ExtensionHealth(ExtensionState.SUCCEEDED, EXTENSION_VERSION),
        )


def _workload(repository: str) -> str:
    return repository.rsplit("/", 1)[-1]
