"""Simulated connected registries for the local runtime: no Azure, same port as the ARM adapter.

Each registered site behaves like a connected registry that syncs at the opening of every window
of its schedule while it is online. Sites can be taken offline and back; the worker sees ARM-shaped
state (connection state, last sync and activity times) and reaches the same decisions it would in
Azure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from cronsim import CronSim

from shared.domain.inventory import TokenState
from shared.domain.model import Site
from shared.domain.observations import ConnectedRegistryState, ConnectionState, SyncScope
from shared.domain.windows import CONTINUOUS_SCHEDULE, window_at_or_after
from shared.errors import NotFound

# A simulated site finishes a sync this long after its window opens.
SYNC_DURATION = timedelta(seconds=5)
SIMULATED_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def simulated_resource_id(site: str) -> str:
    """The connected-registry id a simulated site gets when its sites file names none."""
    return (
        f"/subscriptions/{SIMULATED_SUBSCRIPTION}/resourceGroups/acrsync-simulated/providers"
        f"/Microsoft.ContainerRegistry/registries/simulated/connectedRegistries/{site}"
    )


def local_registry_state(
    site: Site,
    resource_id: str,
    now: datetime,
    *,
    offline_since: datetime | None,
    syncing: bool,
    last_sync: datetime | None,
) -> ConnectedRegistryState:
    """What ARM would report for a connected registry that acrsync runs locally (simulated or on a
    loopback registry): active, read-only, with the site's own schedule and its sync token."""
    if offline_since is not None:
        connection = ConnectionState.OFFLINE
    elif syncing:
        connection = ConnectionState.SYNCING
    else:
        connection = ConnectionState.ONLINE
    return ConnectedRegistryState(
        resource_id=resource_id,
        name=site.name,
        connection_state=connection,
        observed_at=now,
        active=True,
        mode="ReadOnly",
        provisioning_state="Succeeded",
        last_activity_time=offline_since or now,
        last_sync_time=last_sync,
        schedule=site.schedule or CONTINUOUS_SCHEDULE,
        sync_window=site.sync_window if site.schedule else None,
        message_ttl=site.message_ttl,
        token_id=f"{resource_id.rstrip('/').rsplit('/connectedRegistries/', 1)[0]}/tokens/{site.name}",
    )


class SimulatedConnectedRegistries:
    """:class:`~shared.ports.ConnectedRegistryReader` over simulated sites."""

    def __init__(self, sites: Callable[[], list[Site]], now: Callable[[], datetime]) -> None:
        self._sites, self._now = sites, now
        self._offline_since: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def set_online(self, site: str, online: bool) -> None:
        """Take a site offline (it stops syncing) or bring it back."""
        self._site(site)
        with self._lock:
            if online:
                self._offline_since.pop(site, None)
            else:
                self._offline_since.setdefault(site, self._now())

    def is_online(self, site: str) -> bool:
        with self._lock:
            return site not in self._offline_since

    def get_connected_registry(self, resource_id: str) -> ConnectedRegistryState:
        site = self._site_for(resource_id)
        now = self._now()
        with self._lock:
            offline_since = self._offline_since.get(site.name)
        window = window_at_or_after(site.schedule, site.sync_window, now)
        syncing = window.contains(now) and site.schedule not in (None, CONTINUOUS_SCHEDULE)
        return local_registry_state(
            site,
            resource_id,
            now,
            offline_since=offline_since,
            syncing=syncing,
            last_sync=self._last_sync(site, now, offline_since),
        )

    def get_sync_scope(self, token_id: str) -> SyncScope:
        site = self._site(token_id.rstrip("/").rsplit("/", 1)[-1])
        return SyncScope(token_id=token_id, token_enabled=True, repository_patterns=site.repositories)

    def get_token(self, token_id: str) -> TokenState:
        return TokenState.from_sync_scope(self.get_sync_scope(token_id))

    def _last_sync(self, site: Site, now: datetime, offline_since: datetime | None) -> datetime | None:
        """The end of the last sync: the newest window opening while online, plus the sync's duration."""
        horizon = min(now - SYNC_DURATION, offline_since) if offline_since else now - SYNC_DURATION
        minute_after = horizon.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for opening in CronSim(site.schedule or CONTINUOUS_SCHEDULE, minute_after, reverse=True):
            if opening <= horizon:
                return opening + SYNC_DURATION
        return None  # pragma: no cover - cron schedules always have an earlier occurrence

    def _site_for(self, resource_id: str) -> Site:
        wanted = resource_id.rstrip("/").lower()
        for site in self._sites():
            if (site.connected_registry or simulated_resource_id(site.name)).lower() == wanted:
                return site
        raise NotFound(f"no simulated connected registry {resource_id}")

    def _site(self, name: str) -> Site:
        for site in self._sites():
            if site.name == name:
                return site
        raise NotFound(f"no simulated site {name!r}")
