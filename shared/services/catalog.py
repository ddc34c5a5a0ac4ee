"""The site catalog as ingest sees it: read from the store at most once per ``ttl`` per process.

Sites change rarely and every push needs all of them, so a short cache keeps fan-out at one read
of the site table per ``ttl`` instead of one per event (at 10,000 sites that is ten 1,000-entity
pages). A site added meanwhile is picked up by the next refresh, and ``backfill_site`` gives it
what it missed.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from shared.domain.model import Site
from shared.ports import Clock, StateStore

DEFAULT_TTL = timedelta(seconds=30)


class SiteCatalog:
    def __init__(self, store: StateStore, clock: Clock, *, ttl: timedelta = DEFAULT_TTL) -> None:
        self._store, self._clock, self._ttl = store, clock, ttl
        self._lock = threading.Lock()
        self._sites: list[Site] | None = None
        self._read_at: datetime | None = None

    def sites(self) -> list[Site]:
        now = self._clock.now()
        with self._lock:
            fresh = self._read_at is not None and self._read_at <= now < self._read_at + self._ttl
            if self._sites is None or not fresh:
                self._sites = self._store.list_sites()
                self._read_at = now
            return list(self._sites)

    def invalidate(self) -> None:
        with self._lock:
            self._sites, self._read_at = None, None
