"""The sweeper (a timer): the safety net under the per-site jobs.

* Rows past their deadline become STALE even when their next job is far away or lost.
* Rows whose job should have run a while ago get a recovery job (a message can be lost when a
  send fails after the row was saved, or when an operator purges a queue).
* Only rows that are due are read (the stores' due index, :attr:`SiteSync.due_at`): a sweep costs
  one small query per recent release with rows on their way, and the due rows; releases whose
  summary says every row has arrived are skipped, and synced history is never read. Releases
  created before the index existed are read whole, as before.
* Each site's schedule, window and TTL are refreshed from its connected registry in ARM: they
  can change in Azure, and the window arithmetic must follow.
* Each site's sync and client tokens are checked for expiry (hourly; :mod:`shared.services.governance`).
* Sites that name a Log Analytics workspace or an Arc cluster are observed: what runs there, pull errors,
  cluster connectivity and the connected registry extension (:func:`shared.services.workloads.observe_sites`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.domain.changes import RowChange, transition
from shared.domain.decisions import Observations, decide_check
from shared.domain.messages import JobKind, SiteSyncJob
from shared.domain.model import Release, Site, SiteSync
from shared.domain.states import EvidenceSource, SyncState
from shared.domain.windows import check_limits
from shared.errors import AcrSyncError, InvalidInput
from shared.logs import log_context
from shared.observability import set_site_gauges
from shared.services.announce import announce
from shared.services.dependencies import Dependencies
from shared.services.fanout import PlannedJob, send_jobs
from shared.services.governance import check_tokens
from shared.services.rows import release_loader, update_row
from shared.services.summaries import schedule_summary
from shared.services.workloads import announce_expiring_tls, observe_sites

logger = logging.getLogger(__name__)

SWEEP_HORIZON = timedelta(days=14)
LOST_JOB_GRACE = timedelta(minutes=10)
# A release with rows on their way is summarised after each of their changes; one not summarised
# for this long lost its summary (or nothing changed), so the sweep reads its due rows itself.
SUMMARY_OVERDUE = timedelta(hours=1)
_OPEN = frozenset({SyncState.PENDING, SyncState.WAITING_FOR_WINDOW, SyncState.STALE, SyncState.SYNCED})


@dataclass(frozen=True)
class SweepReport:
    releases_scanned: int
    rows_marked_stale: int
    jobs_recovered: int
    sites_refreshed: int
    sites_pending: int = 0  # (site, release) rows still on their way, across the releases swept
    sites_stale: int = 0
    sites_observed: int = 0  # sites whose workloads and health were read from the cloud


def sweep(
    services: Dependencies, *, horizon: timedelta = SWEEP_HORIZON, grace: timedelta = LOST_JOB_GRACE
) -> SweepReport:
    """One sweep. Raises only for a store or queue that is unavailable (the timer retries)."""
    now = services.clock.now()
    refreshed = refresh_sites(services)
    check_tokens(services)  # token expiry: at most hourly; see shared.services.governance
    observed = observe_sites(services)  # what runs where, and site health: shared.services.workloads
    announce_expiring_tls(services)  # certificates as last reported, whether or not a report came now
    sites = {site.name: site for site in services.catalog.sites()}
    scanned = stale = recovered = pending_total = stale_total = 0
    for release in _recent_releases(services, now - horizon):
        pending_total += release.counts.get(SyncState.PENDING, 0) + release.counts.get(SyncState.WAITING_FOR_WINDOW, 0)
        stale_total += release.counts.get(SyncState.STALE, 0)
        if not any(release.counts.get(state) for state in _OPEN) or not _may_be_due(services, release, now):
            continue
        scanned += 1
        made_stale, lost = _sweep_release(services, release, sites, now, grace)
        stale, recovered = stale + made_stale, recovered + lost
        pending_total, stale_total = pending_total - made_stale, stale_total + made_stale
    set_site_gauges(pending_total, stale_total)
    report = SweepReport(scanned, stale, recovered, refreshed, pending_total, stale_total, observed.sites)
    logger.info(
        "sweep: %s releases scanned, %s rows stale, %s jobs recovered, %s sites refreshed",
        scanned,
        stale,
        recovered,
        refreshed,
    )
    return report


def _recent_releases(services: Dependencies, since: datetime) -> Iterator[Release]:
    """Published, not withdrawn releases pushed since ``since``, newest first."""
    token: str | None = None
    while True:
        page = services.store.list_releases(page_size=100, continuation=token)
        for release in page.items:
            if release.pushed_at < since:
                return
            if release.withdrawn_at is None:
                yield release
        token = page.continuation
        if token is None:
            return


def refresh_sites(services: Dependencies) -> int:
    """Copy schedule, window and TTL from each site's connected registry when they changed in Azure."""
    changed: list[Site] = []
    for site in services.store.list_sites():
        if not site.connected_registry:
            continue
        try:
            state = services.arm.get_connected_registry(site.connected_registry)
        except AcrSyncError as exc:
            logger.warning("could not refresh site %s from ARM: %s", site.name, type(exc).__name__)
            continue
        updated = replace(
            site,
            schedule=state.schedule or site.schedule,
            sync_window=state.sync_window or site.sync_window,
            message_ttl=state.message_ttl or site.message_ttl,
        )
        if updated == site:
            continue
        try:
            check_limits(sync_window=updated.sync_window, message_ttl=updated.message_ttl)
        except InvalidInput as exc:
            logger.warning(
                "ARM settings of site %s are outside the documented limits (%s); kept as configured",
                site.name,
                exc.detail,
            )
            continue
        changed.append(updated)
    if changed:
        services.store.upsert_sites(changed)
        services.catalog.invalidate()
        logger.info("refreshed %s sites from their connected registries", len(changed))
    return len(changed)


def _may_be_due(services: Dependencies, release: Release, now: datetime) -> bool:
    """Whether any row of the release may be due: its summary's earliest due time has come. A
    release never summarised, or not for a long while (its summary lost), is read, and gets a new
    summary."""
    if not release.indexed or release.counts_as_of is None:
        return True
    if now - release.counts_as_of > SUMMARY_OVERDUE:
        schedule_summary(services.queue, services.clock, release.release_id)
        return True
    return release.next_due_at is not None and release.next_due_at <= now


def _sweep_release(
    services: Dependencies, release: Release, sites: dict[str, Site], now: datetime, grace: timedelta
) -> tuple[int, int]:
    stale, lost_jobs = 0, []
    store = services.store
    with log_context(release_id=release.release_id):
        due = (
            store.list_due_site_syncs(release.release_id, due_by=now)
            if release.indexed
            else store.list_site_syncs(release.release_id)
        )
        for versioned in due:
            row = versioned.value
            site = sites.get(row.site)
            if row.state not in _OPEN or site is None:
                continue
            if row.state is not SyncState.SYNCED and _now_stale(services, row, site, now):
                stale += 1
            if row.next_check_at is not None and row.next_check_at + grace < now:
                lost_jobs.append(PlannedJob(SiteSyncJob(row.release_id, row.site, JobKind.RECOVERY, row.checks), None))
        if lost_jobs:
            send_jobs(services.queue, lost_jobs)
            logger.warning("re-enqueued %s overdue checks", len(lost_jobs))
    return stale, len(lost_jobs)


def _now_stale(services: Dependencies, row: SiteSync, site: Site, now: datetime) -> bool:
    if row.state is SyncState.STALE:
        return False
    decision = decide_check(row, site, Observations(now=now))
    if decision.state is not SyncState.STALE:
        return False

    def decide(current: SiteSync) -> RowChange | None:
        if current.state is not row.state or current.checks != row.checks:
            return None
        return transition(
            current,
            SyncState.STALE,
            decision.reason,
            source=EvidenceSource.SCHEDULE,
            summary=decision.summary + " (found by the sweeper)",
            at=now,
            details=decision.details,
        )

    update = update_row(services.store, row.release_id, row.site, decide)
    if update.changed:
        schedule_summary(services.queue, services.clock, row.release_id)
        announce(services.events, update, release_loader(services.store, row.release_id), now)
    return update.changed
