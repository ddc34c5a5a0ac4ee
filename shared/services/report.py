"""Reporting: how each site fared over a period (``since`` = now minus N days or hours).

Per site, over the releases pushed in the period:

* ``releases_received``: its rows in scope (every state but ``SKIPPED``), i.e. the releases that
  fanned out to it; ``releases_ready``: how many of those are ``SYNCED`` or ``VERIFIED`` now;
* ``lag_median_seconds`` / ``lag_p95_seconds``: from the push to the row first reaching ``SYNCED`` or
  ``VERIFIED`` (the earlier of ``synced_at`` and ``verified_at``, never below zero), over the rows that
  got there: ranks as in linear interpolation between the closest ranks (numpy's default), each
  value estimated from the site ledger's lag histogram (buckets 5 % wide, so within 2.5 % of the
  exact lag). ``null`` when no row got there;
* ``windows_missed``: rows that went ``STALE`` with reason ``WINDOW_MISSED`` (counted once per row,
  from the evidence, so a row that caught up later still counts);
* ``stale_incidents``: times a row went ``STALE``; a row an operator retried that goes straight back to
  ``STALE`` is the same incident (it was never anything but stale in between);
* ``bytes_delivered``: what the rows that arrived needed (their ``bytes_needed``: the release's blobs
  the site did not hold), summed; rows of releases not weighed count nothing;
* ``exposure``: ``repositories_approved`` (the site's approved repository patterns) and, for a site
  with a connected registry, its scope drift now (:func:`shared.services.governance.site_drift`):
  ``drift`` (true/false), ``over_exposed`` and ``missing`` (counts of scope-map patterns no approval
  covers, and of approvals no grant covers). All three are ``null`` without a connected registry or
  when ARM cannot tell (best effort: the report never fails for it).

Sources and cost: releases are listed newest push first in pages of 200 until one was pushed before
``since`` (their headers only). The figures come from the site ledger (:mod:`shared.domain.ledger`):
figures per site and push day, kept as rows change (seeded by each release's first summary), so
a report costs sites × days with pushes in the period, not every row of every release in it.
Releases created before the ledger existed are counted from their rows as before: one partition
read each, and one evidence read when one of its rows has ever been stale. A release pushed before
``since`` does not count, even when one of its rows went stale inside the period. Periods run from
1 hour to ``MAX_PERIOD``. The drift costs, per site with a connected registry, the ARM reads of its
state and sync scope, through the services' short ARM cache.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.ledger import LedgerFigures, figures_by_site, ledger_entry
from shared.domain.model import Release, Site
from shared.domain.states import SyncReason, SyncState
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
    tallies = {site.name: LedgerFigures() for site in sites}
    for release in releases_since(store, start):
        if not release.indexed:
            _count(store, release, tallies)
    days = store.list_ledger(pushed_from=start, pushed_until=until)
    for site, figures in figures_by_site(days, start).items():
        if site in tallies:  # not a deleted site
            tallies[site].merge(figures)
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


def _count(store: StateStore, release: Release, tallies: dict[str, LedgerFigures]) -> None:
    """A release created before the site ledger: its rows' entries, with the stale incidents and
    missed windows from its evidence (those rows do not count them)."""
    rows = [versioned.value for versioned in store.list_site_syncs(release.release_id)]
    entries = {row.site: entry for row in rows if row.site in tallies and (entry := ledger_entry(row)) is not None}
    if any(row.stale_at is not None for row in rows if row.site in entries):
        incidents: Counter[str] = Counter()
        missed: set[str] = set()
        retried_stale: set[str] = set()  # sites whose last move was a retry out of STALE
        for record in store.list_evidence(release.release_id):  # oldest first
            if record.site not in entries or record.state_to is None:
                continue
            if record.state_to is SyncState.STALE:
                if record.site not in retried_stale:
                    incidents[record.site] += 1
                if record.reason is SyncReason.WINDOW_MISSED:
                    missed.add(record.site)
            if record.state_from is SyncState.STALE and record.reason is SyncReason.OPERATOR_RETRY:
                retried_stale.add(record.site)
            elif record.state_from is not None and record.state_from is not record.state_to:
                retried_stale.discard(record.site)
        entries = {
            site: replace(entry, stale_incidents=incidents[site], window_missed=site in missed)
            for site, entry in entries.items()
        }
    for site, entry in entries.items():
        tallies[site].add(entry)


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


def _site_view(site: Site, tally: LedgerFigures, exposure: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": site.name,
        "ring": site.ring,
        "critical": site.critical,
        "releases_received": tally.received,
        "releases_ready": tally.ready,
        "lag_median_seconds": tally.lag_percentile(0.5),
        "lag_p95_seconds": tally.lag_percentile(0.95),
        "windows_missed": tally.windows_missed,
        "stale_incidents": tally.stale_incidents,
        "bytes_delivered": tally.bytes_delivered,
        "exposure": exposure,
    }
