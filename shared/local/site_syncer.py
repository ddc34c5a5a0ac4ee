"""A site's sync: its connected registry's stand-in copies what the site approves from the parent, in the
site's windows, while the site is online (the mirroring itself is :mod:`shared.local.mirror`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.domain.model import Site
from shared.domain.windows import Window, window_at_or_after
from shared.errors import AcrSyncError
from shared.local.mirror import CopyReport, RegistryMirror
from shared.local.registry_server import RegistryServer

log = logging.getLogger(__name__)

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
