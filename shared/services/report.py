"""Reporting: how each site fared over a period (``since`` = now minus N days or hours).

Per site, over the releases pushed in the period:

* ``releases_received``: its rows in scope (every state but ``SKIPPED``), i.e. the releases that
  fanned out to it; ``releases_ready``: how many of those are ``SYNCED`` or ``VERIFIED`` now;
* ``lag_median_seconds`` / ``lag_p95_seconds``: from the push to the row first reaching ``SYNCED`` or
  ``VERIFIED`` (the earlier of ``synced_at`` and ``verified_at``, never below zero), over the rows that
  got there. The median is the middle value (the mean of the two middle ones for an even count); p95
  interpolates linearly between the closest ranks (numpy's default, ``statistics.quantiles`` with
  ``method="inclusive"``). ``null`` when no row got there;
* ``windows_missed``: rows that went ``STALE`` with reason ``WINDOW_MISSED`` (counted once per row,
  from the evidence, so a row that caught up later still counts);
* ``stale_incidents``: evidence records moving a row to ``STALE`` (a row retried and stale again
  counts twice);
* ``exposure``: ``repositories_approved`` (the site's approved repository patterns) and, for a site
  with a connected registry, its scope drift now (:func:`shared.services.governance.site_drift`):
  ``drift`` (true/false), ``over_exposed`` and ``missing`` (counts of scope-map patterns no approval
  covers, and of approvals no grant covers). All three are ``null`` without a connected registry or
  when ARM cannot tell (best effort: the report never fails for it).

Sources and cost: releases are listed newest push first in pages of 200 until one was pushed before
``since`` (their headers only). The figures come from the site ledger (:mod:`shared.domain.ledger`):
one entry per release and site, written with every row change and at fan-out, read by push day, so
a report costs sites × days with pushes in the period, not every row of every release in it.
Releases created before the ledger existed are counted from their rows as before: one partition
read each, and one evidence read when one of its rows has ever been stale. A release pushed before
``since`` does not count, even when one of its rows went stale inside the period. Periods run from
1 hour to ``MAX_PERIOD``. The drift costs, per site with a connected registry, the ARM reads of its
state and sync scope, through the services' short ARM cache.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.domain.model import Release, Site
from shared.domain.states import READY_STATES, SyncReason, SyncState
from shared.errors import AcrSyncError, InvalidInput
from shared.ports import StateStore
from shared.services import governance
from shared.services.dependencies import Dependencies

logger = logging.getLogger(__name__)

DEFAULT_SINCE = "30d"
MAX_PERIOD = timedelta(days=366)
RELEASES_PAGE_SIZE = 200
_PERIOD = re.compile(r"([1-9][0-9]{0,5})([dh])")


def parse_since(text: str) -> timedelta:
    """``30d`` → 30 days, ``12h`` → 12 hours (1 h to 366 d).

    Raises:
        InvalidInput: ``INVALID_SINCE``.
    """
    match = _PERIOD.fullmatch(text.strip()) if isinstance(text, str) and len(text) <= 16 else None
    if match is None:
        raise InvalidInput("INVALID_SINCE", "since is a number of days or hours, e.g. 30d or 12h")
    amount, unit = int(match.group(1)), match.group(2)
    period = timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
    if period > MAX_PERIOD:
        raise InvalidInput("INVALID_SINCE", f"since may reach back at most {MAX_PERIOD.days} days")
    return period


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile (0-1) by linear interpolation between closest ranks, to the millisecond;
    ``None`` when empty. The rank is rounded to nine places first, so 0.95 of 21 values is exactly rank 19."""
    if not values:
        return None
    ordered = sorted(values)
    rank = round(fraction * (len(ordered) - 1), 9)
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 3)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 0.5)


@dataclass
class _Tally:
    received: int = 0
    ready: int = 0
    lags: list[float] = field(default_factory=list)
    windows_missed: int = 0
    stale_incidents: int = 0


def site_report(services: Dependencies, since: str = DEFAULT_SINCE) -> dict[str, Any]:
    """``{"since", "until", "value": [one entry per site, by name]}``.

    Raises:
        InvalidInput: ``INVALID_SINCE``.
    """
    period = parse_since(since)
    until = services.clock.now()
    start = until - period
    store = services.store
    sites = store.list_sites()
    tallies = {site.name: _Tally() for site in sites}
    indexed: set[str] = set()
    for release in releases_since(store, start):
        if release.indexed:
            indexed.add(release.release_id)
        else:
            _count(store, release, tallies)
    for entry in store.list_ledger(pushed_from=start, pushed_until=until):
        tally = tallies.get(entry.site)
        if tally is None or entry.release_id not in indexed:
            continue  # a deleted site, or a release not (yet) published
        tally.received += 1
        tally.ready += entry.ready
        if entry.lag_seconds is not None:
            tally.lags.append(entry.lag_seconds)
        tally.windows_missed += entry.window_missed
        tally.stale_incidents += entry.stale_incidents
    return {
        "since": start.isoformat(),
        "until": until.isoformat(),
        "value": [_site_view(site, tallies[site.name], _exposure(services, site)) for site in sites],
    }


def releases_since(store: StateStore, start: datetime) -> Iterator[Release]:
    """Published releases pushed at or after ``start``, newest first."""
    continuation: str | None = None
    while True:
        page = store.list_releases(page_size=RELEASES_PAGE_SIZE, continuation=continuation)
        for release in page.items:
            if release.pushed_at < start:
                return
            yield release
        continuation = page.continuation
        if continuation is None:
            return


def _count(store: StateStore, release: Release, tallies: dict[str, _Tally]) -> None:
    rows = [versioned.value for versioned in store.list_site_syncs(release.release_id)]
    in_scope = [row for row in rows if row.state is not SyncState.SKIPPED and row.site in tallies]
    for row in in_scope:
        tally = tallies[row.site]
        tally.received += 1
        if row.state in READY_STATES:
            tally.ready += 1
        arrived = [at for at in (row.synced_at, row.verified_at) if at is not None]
        if arrived:
            tally.lags.append(max(0.0, (min(arrived) - row.pushed_at).total_seconds()))
    if not any(row.stale_at is not None for row in in_scope):
        return
    missed: set[str] = set()
    for record in store.list_evidence(release.release_id):
        if record.state_to is not SyncState.STALE or record.site not in tallies:
            continue
        tallies[record.site].stale_incidents += 1
        if record.reason is SyncReason.WINDOW_MISSED:
            missed.add(record.site)
    for site in missed:
        tallies[site].windows_missed += 1


def _exposure(services: Dependencies, site: Site) -> dict[str, Any]:
    exposure: dict[str, Any] = {
        "repositories_approved": len(site.repositories),
        "drift": None,
        "over_exposed": None,
        "missing": None,
    }
    if not site.connected_registry:
        return exposure
    try:
        drift = governance.site_drift(services, site).drift
    except AcrSyncError as exc:  # ARM throttled or unreachable: unknown, not an error
        logger.info("scope drift of site %s unknown (%s)", site.name, type(exc).__name__)
        return exposure
    if drift is not None:
        exposure.update(drift=drift.drifted, over_exposed=len(drift.over_exposed), missing=len(drift.missing))
    return exposure


def _site_view(site: Site, tally: _Tally, exposure: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": site.name,
        "ring": site.ring,
        "critical": site.critical,
        "releases_received": tally.received,
        "releases_ready": tally.ready,
        "lag_median_seconds": median(tally.lags),
        "lag_p95_seconds": percentile(tally.lags, 0.95),
        "windows_missed": tally.windows_missed,
        "stale_incidents": tally.stale_incidents,
        "exposure": exposure,
    }
