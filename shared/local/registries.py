"""Real OCI registries for ``acrsync dev --registries real``: a parent and one registry per site, on loopback.

Every registry is the CNCF distribution registry (Debian's ``docker-registry``) serving plain http on
``127.0.0.1:<free port>`` with filesystem storage under ``<data dir>/registries/parent/`` and
``<data dir>/registries/sites/<site>/`` (config, data, log); a registry keeps its port across restarts
when it is still free, and always keeps its content.

* **The parent** stands in for the cloud registry. Its ``notifications`` endpoint is the dev API's
  bridge (``POST /api/dev/registry-notifications``, :mod:`shared.local.bridge`), which turns each push by
  tag into the ACR ``ImagePushed`` event Event Grid would deliver, so any OCI client pushing into the
  parent (``skopeo copy``, ``oras``, ``docker push``) starts a release.
* **Each site's registry** stands in for its connected registry (each registry is a
  :class:`~shared.local.registry_server.RegistryServer`). A :class:`~shared.local.site_syncer.SiteSyncer`
  thread plays the connected registry's sync: at every opening of the site's windows (cron ``schedule``
  plus ``sync_window``; continuous sync opens one every minute), and whenever the parent reports a push
  while a window is open, it copies from the parent every tag of every repository the site approves that
  the site does not hold yet, over the OCI API (:class:`~shared.local.mirror.RegistryMirror`). The parent
  notifies a push before it has linked the tag, so a tag it lists but cannot resolve yet makes the syncer
  look again a moment later. Outside its windows, and while the site is offline, nothing is copied. Like a
  connected registry it syncs repositories, not tag policies; acrsync's tag policy decides which releases
  a site is *expected* to receive.
* ARM is not available locally, so :class:`LocalConnectedRegistries` answers the worker's ARM port
  from the syncers: ``connectionState`` (Offline while the site is offline, Syncing while a pass
  runs), ``lastSyncTime`` (the end of the last completed pass) and the scope (the site's approved
  repositories). The worker still verifies with its real manifest check against the site's registry.

Taking a site offline stops its syncing (the registry keeps serving what it holds, as a site's
registry does for its own cluster); bringing it back resumes it at once if a window is open.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from shared.domain.inventory import TokenState
from shared.domain.model import Site
from shared.domain.observations import ConnectedRegistryState, SyncScope
from shared.errors import NotFound
from shared.local.mirror import RegistryMirror
from shared.local.registry_server import NotificationTarget, RegistryServer
from shared.local.simulated import local_registry_state
from shared.local.site_syncer import SiteSyncer, SyncPass
from shared.local.tls import LocalCertificate

PARENT = "parent"


class LocalRegistries:
    """The parent registry, each site's registry and its syncer; also switches sites online and offline.

    Args:
        root: the folder the registries keep their config, storage and logs in.
        notifications: where the parent posts its notifications (the dev API's bridge).
        sites: the sites as acrsync knows them now (read at every sync, so scope changes apply).
        clock: timezone-aware "now".
        login_server: the parent's login server as acrsync knows it; its loopback address when unset.
    """

    def __init__(
        self,
        root: Path,
        *,
        notifications: NotificationTarget | None,
        sites: Callable[[], Iterable[Site]],
        clock: Callable[[], datetime],
        login_server: str | None = None,
        mirror: RegistryMirror | None = None,
        tls: LocalCertificate | None = None,
    ) -> None:
        self.root = root
        self.tls = tls  # the site registries serve https with it (the parent stays plain http)
        self._sites = sites
        self._clock = clock
        self._login_server = login_server
        self._mirror = mirror or RegistryMirror(verify=tls.client_context() if tls is not None else True)
        self._parent = RegistryServer(PARENT, root / PARENT, notifications=notifications)
        self._syncers: dict[str, SiteSyncer] = {}
        self._lock = threading.Lock()
        self._started = False
        self._exit_hook = False

    @property
    def parent(self) -> RegistryServer:
        return self._parent

    @property
    def login_server(self) -> str:
        """The parent's login server in events and release ids: as configured, else its loopback address."""
        return self._login_server or self._parent.netloc

    @login_server.setter
    def login_server(self, value: str | None) -> None:
        self._login_server = value.lower() if value else None

    def start_parent(self) -> RegistryServer:
        self._at_exit()
        self._parent.start()
        return self._parent

    def ensure_site(self, name: str) -> str:
        """Start the site's registry (and, once started, its syncer); return its endpoint."""
        self.start_parent()
        with self._lock:
            syncer = self._syncers.get(name)
            if syncer is None:
                server = RegistryServer(name, self.root / "sites" / name, tls=self.tls)
                syncer = SiteSyncer(
                    name, server, self._parent, site=lambda: self._site(name), mirror=self._mirror, clock=self._clock
                )
                self._syncers[name] = syncer
            started = self._started
        syncer.registry.start()
        if started:
            syncer.start()
        return syncer.registry.url

    def start(self) -> None:
        """Start every site's syncer; sites ensured later start theirs at once."""
        with self._lock:
            self._started = True
            syncers = list(self._syncers.values())
        for syncer in syncers:
            syncer.start()

    def stop(self) -> None:
        """Stop the syncers, then every registry (idempotent)."""
        with self._lock:
            self._started = False
            syncers = list(self._syncers.values())
        for syncer in syncers:
            syncer.stop()
        for syncer in syncers:
            syncer.registry.stop()
        self._parent.stop()
        self._mirror.close()
        if self._exit_hook:
            atexit.unregister(self.stop)
            self._exit_hook = False

    def servers(self) -> list[RegistryServer]:
        with self._lock:
            return [self._parent, *(syncer.registry for syncer in self._syncers.values())]

    def syncer(self, site: str) -> SiteSyncer:
        with self._lock:
            syncer = self._syncers.get(site)
        if syncer is None:
            raise NotFound(f"no local registry for site {site!r}")
        return syncer

    def syncers(self) -> list[SiteSyncer]:
        with self._lock:
            return list(self._syncers.values())

    def endpoint(self, site: str) -> str:
        return self.syncer(site).registry.url

    # -- what the dev API steers -----------------------------------------------------------------

    def set_online(self, site: str, online: bool) -> None:
        """Take a site offline (it stops syncing) or bring it back. Raises: NotFound."""
        self.syncer(site).set_online(online)

    def is_online(self, site: str) -> bool:
        with self._lock:
            syncer = self._syncers.get(site)
        return syncer.online if syncer is not None else False

    def parent_pushed(self) -> None:
        """The parent reported a change: every site in an open window syncs now."""
        for syncer in self.syncers():
            syncer.request_sync()

    def sync_now(self, site: str) -> SyncPass | None:
        """Run one pass of ``site`` now if it is online and in a window (tests, demos)."""
        return self.syncer(site).sync_now()

    def _site(self, name: str) -> Site | None:
        return next((site for site in self._sites() if site.name == name), None)

    def _at_exit(self) -> None:
        # A process that dies without stop() must not leave registries behind.
        if not self._exit_hook:
            atexit.register(self.stop)
            self._exit_hook = True


class LocalConnectedRegistries:
    """:class:`~shared.ports.ConnectedRegistryReader` over the local sites' syncers (no ARM locally)."""

    def __init__(
        self, registries: LocalRegistries, sites: Callable[[], Iterable[Site]], clock: Callable[[], datetime]
    ) -> None:
        self._registries = registries
        self._sites = sites
        self._clock = clock

    def get_connected_registry(self, resource_id: str) -> ConnectedRegistryState:
        site = self._site_for(resource_id)
        syncer = self._registries.syncer(site.name)
        now = self._clock()
        return local_registry_state(
            site,
            resource_id,
            now,
            offline_since=syncer.offline_since,
            syncing=syncer.syncing,
            last_sync=syncer.last_sync_at,
        )

    def get_sync_scope(self, token_id: str) -> SyncScope:
        name = token_id.rstrip("/").rsplit("/", 1)[-1]
        site = next((site for site in self._sites() if site.name == name), None)
        if site is None:
            raise NotFound(f"no local sync token {token_id}")
        return SyncScope(token_id=token_id, token_enabled=True, repository_patterns=site.repositories)

    def get_token(self, token_id: str) -> TokenState:
        return TokenState.from_sync_scope(self.get_sync_scope(token_id))

    def _site_for(self, resource_id: str) -> Site:
        wanted = resource_id.rstrip("/").lower()
        name = wanted.rsplit("/", 1)[-1]
        sites = list(self._sites())
        for site in sites:
            if site.connected_registry and site.connected_registry.rstrip("/").lower() == wanted:
                return site
        for site in sites:
            if site.name == name:
                return site
        raise NotFound(f"no local connected registry {resource_id}")
