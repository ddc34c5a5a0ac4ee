"""Real OCI registries for ``acrsync dev --registries real``: a parent and one registry per site, on loopback.

Every registry is the CNCF distribution registry (Debian's ``docker-registry``) serving plain http on
``127.0.0.1:<free port>`` with filesystem storage under ``<data dir>/registries/parent/`` and
``<data dir>/registries/sites/<site>/`` (config, data, log); a registry keeps its port across restarts
when it is still free, and always keeps its content.

* **The parent** stands in for the cloud registry. Its ``notifications`` endpoint is the dev API's
  bridge (``POST /api/dev/registry-notifications``), which turns each push by tag into the ACR
  ``ImagePushed`` event Event Grid would deliver (:func:`acr_events_from_notifications`), so any OCI
  client pushing into the parent (``skopeo copy``, ``oras``, ``docker push``) starts a release.
* **Each site's registry** stands in for its connected registry. A :class:`SiteSyncer` thread plays
  the connected registry's sync: at every opening of the site's windows (cron ``schedule`` plus
  ``sync_window``; continuous sync opens one every minute), and whenever the parent reports a push
  while a window is open, it copies from the parent every tag of every repository the site approves
  that the site does not hold yet, over the OCI API (:class:`RegistryMirror`). The parent notifies a
  push before it has linked the tag, so a tag it lists but cannot resolve yet makes the syncer look
  again a moment later. Outside its windows, and while the site is offline, nothing is copied. Like
  a connected registry it syncs repositories, not tag policies; acrsync's tag policy decides which
  releases a site is *expected* to receive.
* ARM is not available locally, so :class:`LocalConnectedRegistries` answers the worker's ARM port
  from the syncers: ``connectionState`` (Offline while the site is offline, Syncing while a pass
  runs), ``lastSyncTime`` (the end of the last completed pass) and the scope (the site's approved
  repositories). The worker still verifies with its real manifest check against the site's registry.

Taking a site offline stops its syncing (the registry keeps serving what it holds, as a site's
registry does for its own cluster); bringing it back resumes it at once if a window is open.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from shared.adapters.oci import MANIFEST_MEDIA_TYPES
from shared.adapters.registry_mirror import CopyReport, RegistryMirror
from shared.adapters.simulated import local_registry_state
from shared.bootstrap import Services
from shared.domain.acr_events import AcrEventType, image_deleted_event, image_pushed_event
from shared.domain.inventory import TokenState
from shared.domain.model import Site
from shared.domain.names import release_id_for
from shared.domain.observations import ConnectedRegistryState, SyncScope
from shared.domain.windows import Window, window_at_or_after
from shared.errors import AcrSyncError, ConfigurationError, InvalidInput, NotFound
from shared.services.ingest import IngestResult, ingest_event

log = logging.getLogger(__name__)

REGISTRY_BINARY = "docker-registry"
INSTALL_HINT = "apt-get install docker-registry"
NOTIFICATIONS_PATH = "/api/dev/registry-notifications"
# What the distribution registry sends its notifications as.
DISTRIBUTION_EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
LOCAL_RESOURCE_GROUP = "acrsync-local"
PARENT = "parent"
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3
# A syncer looks at its site again at least this often (schedules and scopes can change meanwhile).
IDLE_WAKE_S = 30.0
# After a failed pass (the parent unreachable) the syncer tries again this soon while the window is open.
RETRY_AFTER_FAILURE_S = 5.0
# The parent notifies a push before it has linked the tag: a tag it lists but cannot resolve yet is
# being written, and the syncer looks again this soon, a few times (a tag that never resolves is
# left for the next window).
SETTLE_RETRY_S = 0.2
MAX_SETTLE_RETRIES = 10
# Wake a little after a window opens, so the clock is certainly inside it.
OPENING_SLACK_S = 0.05


# -- names Azure would give -----------------------------------------------------------------------


def registry_name(login_server: str) -> str:
    """The registry's resource name: the login server's first label (``contosoacr``), else ``local``."""
    label = login_server.split(":", 1)[0].split(".", 1)[0].lower()
    return label if label[:1].isalpha() and label.isalnum() else "local"


def registry_topic(login_server: str) -> str:
    """The parent registry's ARM id: the ``topic`` of its Event Grid events."""
    return (
        f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{LOCAL_RESOURCE_GROUP}/providers"
        f"/Microsoft.ContainerRegistry/registries/{registry_name(login_server)}"
    )


def local_resource_id(login_server: str, site: str) -> str:
    """The connected-registry id a site gets in real-registry mode when its sites file names none."""
    return f"{registry_topic(login_server)}/connectedRegistries/{site}"


def notification_url(host: str, port: int) -> str:
    """Where the parent registry posts its notifications: the dev API, reached over loopback when it
    listens on every interface."""
    target = host.strip("[]")
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(target)
        if address.is_unspecified:
            target = "127.0.0.1" if address.version == 4 else "::1"
        if ipaddress.ip_address(target).version == 6:
            target = f"[{target}]"
    return f"http://{target}:{port}{NOTIFICATIONS_PATH}"


# -- the bridge: distribution notifications -> ACR events ------------------------------------------


def acr_events_from_notifications(
    envelope: Any, *, login_server: str, now: Callable[[], datetime] | None = None
) -> list[dict[str, Any]]:
    """ACR-shaped Event Grid events for a distribution notification envelope.

    A push of a manifest by tag becomes ``ImagePushed`` (what ACR raises); a deletion of a manifest by
    digest becomes ``ImageDeleted``. Pulls, blob pushes, pushes by digest alone and tag deletions are
    left out, as ACR raises no release-worthy event for them. ``data.request.host`` is the parent's
    login server as acrsync knows it, so release ids match those of ``acrsync push`` and the CLI.
    Event ids are the registry's, so a notification the registry sends again is a redelivery.

    Raises:
        InvalidInput: ``MALFORMED_EVENT`` when the envelope is not ``{"events": [...]}``.
    """
    if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
        raise InvalidInput("MALFORMED_EVENT", 'a notification envelope is {"events": [...]}')
    clock = now or (lambda: datetime.now(UTC))
    events: list[dict[str, Any]] = []
    for raw in envelope["events"]:
        event = _acr_event(raw, login_server, clock) if isinstance(raw, dict) else None
        if event is not None:
            events.append(event)
    return events


def _acr_event(raw: Mapping[str, Any], login_server: str, clock: Callable[[], datetime]) -> dict[str, Any] | None:
    target = raw.get("target")
    target = target if isinstance(target, dict) else {}
    request = raw.get("request")
    request = request if isinstance(request, dict) else {}
    repository, digest, tag = target.get("repository"), target.get("digest"), target.get("tag")
    if not isinstance(repository, str) or not repository or not isinstance(digest, str) or not digest:
        return None
    raw_id = raw.get("id")
    actor = raw.get("actor")
    common: dict[str, Any] = {
        "event_id": raw_id if isinstance(raw_id, str) and raw_id else str(uuid.uuid4()),
        "topic": registry_topic(login_server),
        "registry": login_server,
        "repository": repository,
        "digest": digest,
        "at": _timestamp(raw.get("timestamp"), clock),
        "actor": actor["name"] if isinstance(actor, dict) and isinstance(actor.get("name"), str) else None,
        "user_agent": str(request.get("useragent") or ""),
    }
    action, media_type = raw.get("action"), target.get("mediaType")
    if action == "push" and isinstance(tag, str) and tag and media_type in MANIFEST_MEDIA_TYPES:
        size = target.get("size", target.get("length"))
        size = size if isinstance(size, int) and not isinstance(size, bool) else None
        return image_pushed_event(tag=tag, media_type=media_type, size=size, **common)
    if action == "delete" and not tag:
        return image_deleted_event(media_type=media_type if isinstance(media_type, str) else None, **common)
    return None


def _timestamp(value: Any, clock: Callable[[], datetime]) -> datetime:
    """The registry's RFC 3339 time; the current time when missing."""
    parsed: datetime | None = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
    if parsed is None or parsed.tzinfo is None:
        parsed = clock()
    return parsed


# -- one registry process -------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationTarget:
    """Where a registry posts its notifications, with the headers to send (an API key: never logged)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class RegistryServer:
    """One ``docker-registry serve`` on loopback: config, storage and log under ``workdir``."""

    def __init__(self, name: str, workdir: Path, *, notifications: NotificationTarget | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.notifications = notifications
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the registry and wait until its API answers (idempotent).

        Raises:
            ConfigurationError: ``docker-registry`` is not installed, or did not come up (with its log).
        """
        if self.running:
            return
        binary = shutil.which(REGISTRY_BINARY)
        if binary is None:
            raise ConfigurationError(f"--registries real needs {REGISTRY_BINARY}: run `{INSTALL_HINT}`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / "port"
        saved = port_file.read_text().strip() if port_file.is_file() else ""
        remembered = int(saved) if saved.isdigit() else 0
        last_log = ""
        for attempt in range(START_ATTEMPTS):
            port = remembered if attempt == 0 and remembered and _port_is_free(remembered) else _free_port()
            config = self.workdir / "config.yml"
            config.unlink(missing_ok=True)
            # Owner-only from the start: it may carry the API key the notifications present.
            with os.fdopen(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(yaml.safe_dump(self._config(port), sort_keys=False))
            log_path = self.workdir / "registry.log"
            self._log = log_path.open("wb")
            self.process = subprocess.Popen(  # noqa: S603 - a fixed binary and a config file we wrote
                [binary, "serve", str(config)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            self.port = port
            if self._wait_until_up():
                port_file.write_text(str(port))
                log.info("registry %s listening on %s", self.name, self.url)
                return
            exited = self.process.poll() is not None
            self.stop()
            last_log = log_path.read_text(errors="replace")[-4000:]
            if not exited or "address already in use" not in last_log:
                break
            log.warning("registry %s lost its port %s; retrying on another", self.name, port)
        raise ConfigurationError(f"registry {self.name} did not start; its log:\n{last_log}")

    def stop(self) -> None:
        """End the process (idempotent)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_until_up(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and self.running:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/", timeout=0.5).status_code == 200:
                    return True
            time.sleep(0.05)
        return False

    def _config(self, port: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        }
        if self.notifications is not None:
            endpoint: dict[str, Any] = {
                "name": "acrsync",
                "url": self.notifications.url,
                "timeout": "5s",
                "threshold": 3,
                "backoff": "1s",
                # Blob pushes and pulls are no releases; manifest pushes and deletions are.
                "ignoredmediatypes": ["application/octet-stream"],
                "ignore": {"actions": ["pull"]},
            }
            if self.notifications.headers:
                endpoint["headers"] = {name: [value] for name, value in self.notifications.headers.items()}
            config["notifications"] = {"events": {"includereferences": True}, "endpoints": [endpoint]}
        return config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- a site's sync --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncPass:
    """One sync of a site: what it copied from the parent, or why it failed."""

    site: str
    window: Window
    started_at: datetime
    finished_at: datetime
    copied: tuple[CopyReport, ...] = ()
    error: str | None = None
    # ``repository:tag`` the parent listed but could not resolve yet (a push in progress)
    unsettled: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        return self.error is None


class SiteSyncer:
    """The sync of one site's registry from the parent, in the site's windows, while it is online."""

    def __init__(
        self,
        name: str,
        registry: RegistryServer,
        parent: RegistryServer,
        *,
        site: Callable[[], Site | None],
        mirror: RegistryMirror,
        clock: Callable[[], datetime],
    ) -> None:
        self.name = name
        self.registry = registry
        self._parent = parent
        self._site = site
        self._mirror = mirror
        self._clock = clock
        self._lock = threading.Lock()  # guards the state below
        self._pass_lock = threading.Lock()  # one pass at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._requested = True  # the first pass runs as soon as a window is open
        self._settle_retries = 0  # passes in a row that found a tag still being written
        self._synced_window: datetime | None = None  # the opening of the window last synced in
        self._offline_since: datetime | None = None
        self._syncing = False
        self._last_pass: SyncPass | None = None
        self._last_sync_at: datetime | None = None
        self._passes = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        with self._lock:
            return self._offline_since is None

    @property
    def offline_since(self) -> datetime | None:
        with self._lock:
            return self._offline_since

    @property
    def syncing(self) -> bool:
        with self._lock:
            return self._syncing

    @property
    def last_pass(self) -> SyncPass | None:
        with self._lock:
            return self._last_pass

    @property
    def last_sync_at(self) -> datetime | None:
        """When the last completed pass ended (ARM's ``lastSyncTime``)."""
        with self._lock:
            return self._last_sync_at

    @property
    def passes(self) -> int:
        with self._lock:
            return self._passes

    def set_online(self, online: bool) -> None:
        with self._lock:
            if online:
                if self._offline_since is not None:
                    self._requested = True  # back in an open window: sync at once
                self._offline_since = None
            elif self._offline_since is None:
                self._offline_since = self._clock()
        self._wake.set()

    def request_sync(self) -> None:
        """The parent has something new: sync at once if the window is open, else at its opening."""
        with self._lock:
            self._requested = True
        self._wake.set()

    def sync_now(self) -> SyncPass | None:
        """Run a pass on the calling thread if the site is online and in a window; ``None`` otherwise."""
        site = self._site()
        now = self._clock()
        if site is None or not self.online:
            return None
        window = window_at_or_after(site.schedule, site.sync_window, now)
        if not window.contains(now):
            return None
        return self._pass(site, window)

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"acrsync-syncer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self._step()
            except Exception:
                log.exception("syncer of site %s failed; trying again", self.name)
                wait = RETRY_AFTER_FAILURE_S
            self._wake.wait(wait)
            self._wake.clear()

    def _step(self) -> float:
        """Sync if due; return how long to sleep (until the next window opening, at most :data:`IDLE_WAKE_S`)."""
        site = self._site()
        if site is None:
            return IDLE_WAKE_S
        now = self._clock()
        window = window_at_or_after(site.schedule, site.sync_window, now)
        with self._lock:
            due = (
                self._offline_since is None
                and window.contains(now)
                and (self._requested or self._synced_window != window.opens_at)
            )
            if due:
                self._requested = False
        done: SyncPass | None = None
        if due and not self._stopping.is_set():
            done = self._pass(site, window)
            now = self._clock()
        after = window.closes_at if window.contains(now) else now
        following = window_at_or_after(site.schedule, site.sync_window, after)
        wait = (following.opens_at - now).total_seconds() + OPENING_SLACK_S
        with self._lock:
            settling = self._settle_retries > 0
        if settling:
            wait = min(wait, SETTLE_RETRY_S)
        elif done is not None and not done.completed and window.contains(now):
            wait = min(wait, RETRY_AFTER_FAILURE_S)
        return max(OPENING_SLACK_S, min(IDLE_WAKE_S, wait))

    def _pass(self, site: Site, window: Window) -> SyncPass:
        with self._pass_lock:
            with self._lock:
                self._syncing = True
            started = self._clock()
            copied: list[CopyReport] = []
            unsettled: list[str] = []
            error: str | None = None
            try:
                self._copy_missing(site, copied, unsettled)
            except AcrSyncError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("sync of site %s failed: %s", self.name, error)
            finally:
                with self._lock:
                    self._syncing = False
            finished = self._clock()
            result = SyncPass(self.name, window, started, finished, tuple(copied), error, tuple(unsettled))
            with self._lock:
                self._last_pass = result
                self._passes += 1
                settling = bool(unsettled) and self._settle_retries < MAX_SETTLE_RETRIES
                self._settle_retries = self._settle_retries + 1 if settling else 0
                if settling:
                    self._requested = True  # look again in a moment, still in this window
                elif error is None:
                    # lastSyncTime: a sync that missed nothing the parent had when it ran
                    self._last_sync_at = finished
                    self._synced_window = window.opens_at
            if copied:
                log.info(
                    "site %s synced %s",
                    self.name,
                    ", ".join(f"{report.repository}@{report.digest}" for report in copied),
                )
            return result

    def _copy_missing(self, site: Site, copied: list[CopyReport], unsettled: list[str]) -> None:
        """Copy every tag of every approved repository that the site's registry does not hold yet
        (appending to ``copied``); tags the parent cannot resolve yet go to ``unsettled``."""
        parent, here = self._parent.url, self.registry.url
        for repository in sorted(self._mirror.repositories(parent)):
            if not site.approves_repository(repository):
                continue
            missing: dict[str, list[str]] = {}
            for tag in sorted(self._mirror.tags(parent, repository)):
                digest = self._mirror.resolve(parent, repository, tag)
                if digest is None:
                    unsettled.append(f"{repository}:{tag}")
                elif self._mirror.resolve(here, repository, tag) != digest:
                    missing.setdefault(digest, []).append(tag)
            for digest, tags in missing.items():
                copied.append(self._mirror.copy(parent, here, repository, digest, tags=tags))


# -- the parent and every site --------------------------------------------------------------------


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
    ) -> None:
        self.root = root
        self._sites = sites
        self._clock = clock
        self._login_server = login_server
        self._mirror = mirror or RegistryMirror()
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
                server = RegistryServer(name, self.root / "sites" / name)
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


def ingest_notifications(services: Services, events: list[dict[str, Any]]) -> list[IngestResult]:
    """Ingest bridged registry notifications each on its own, so one the ingress refuses does not
    hold back the others (the registry would resend the whole envelope forever)."""
    results = []
    for event in events:
        if event["eventType"] == AcrEventType.IMAGE_DELETED and not _known_release(services, event):
            continue  # a blob or an untagged manifest: the registry's delete events do not tell them apart
        results.append(ingest_event(services, event))  # a poison event is logged, dropped and reported
    return results


def _known_release(services: Services, event: dict[str, Any]) -> bool:
    target = event["data"]["target"]
    registry = services.settings.registry or event["data"]["request"]["host"]
    try:
        services.store.get_release(release_id_for(registry, target["repository"], target["digest"]))
    except NotFound:
        return False
    return True
