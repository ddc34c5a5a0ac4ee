"""The site catalog as ingest sees it: read from the store at most once per ``ttl`` per process.

Sites change rarely and every push needs all of them, so a short cache keeps fan-out at one read
of the site table per ``ttl`` instead of one per event (at 10,000 sites that is ten 1,000-entity
pages). A site added meanwhile is picked up by the next refresh, and ``backfill_site`` gives it
what it missed.
"""

from __future__ import annotations

import hashlib
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
        self._fingerprint = ""
        self._read_at: datetime | None = None

    def sites(self) -> list[Site]:
        return list(self._current()[0])

    def fingerprint(self) -> str:
        """Changes whenever the sites read change: part of the ETag of any view that shows them."""
        return self._current()[1]

    def _current(self) -> tuple[list[Site], str]:
        now = self._clock.now()
        with self._lock:
            fresh = self._read_at is not None and self._read_at <= now < self._read_at + self._ttl
            if self._sites is None or not fresh:
                self._sites = self._store.list_sites()
                # Sites are frozen dataclasses of plain values: their repr is a faithful, stable digest input.
                self._fingerprint = hashlib.sha256(repr(self._sites).encode()).hexdigest()[:24]
                self._read_at = now
            return self._sites, self._fingerprint

    def invalidate(self) -> None:
        with self._lock:
            self._sites, self._read_at = None, None
