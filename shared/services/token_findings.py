"""What the sweeper's token check last found, per site, kept in the process that ran it.

The status API shows it (``GET /api/sites`` lists sites without calling ARM), and the check runs at most
once per interval. The composition root builds one per process; it lives as long as the process's services.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from shared.domain.governance import SiteTokens


class TokenFindings:
    """Thread-safe: the sweeper writes while API requests read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sites: dict[str, SiteTokens] = {}
        self._checked_at: datetime | None = None

    def due(self, now: datetime, interval: timedelta) -> bool:
        """Whether the last complete check is older than ``interval`` (or there was none)."""
        with self._lock:
            return self._checked_at is None or now - self._checked_at >= interval

    def record(self, found: Mapping[str, SiteTokens], unreadable: Iterable[str]) -> list[SiteTokens]:
        """Replace every site's finding with ``found``, keeping the previous one of sites that could not be
        read this time; returns every finding now kept."""
        with self._lock:
            kept = {name: self._sites[name] for name in unreadable if name in self._sites}
            self._sites = {**kept, **found}
            return list(self._sites.values())

    def mark_checked(self, at: datetime | None) -> None:
        """The check completed at ``at``; ``None`` leaves it due at the next sweep."""
        with self._lock:
            self._checked_at = at

    def get(self, site: str) -> SiteTokens | None:
        with self._lock:
            return self._sites.get(site)
