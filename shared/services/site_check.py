"""The site check: one job, one site, one release — observe, decide, record, reschedule.

Idempotency guards first: a job for a row that is final completes without work, and a job whose
check number is behind the row's (it was already processed, then redelivered) only makes sure the
follow-up exists. Transient trouble (ARM throttled, the store busy) raises, so the queue redelivers
and eventually dead-letters; permanent findings (site gone, token expired, repository out of scope)
become FAILED rows and the message completes. No poison loops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.domain.announcements import events_for_current_state
from shared.domain.changes import RowChange, transition
from shared.domain.decisions import Observations, apply_decision, decide_check, decide_vanished_site
from shared.domain.messages import JobKind, ReleaseSummaryJob, SiteSyncJob, decode_job
from shared.domain.model import Site, SiteSync, Versioned
from shared.domain.observations import ProbeOutcome, refused_by_site_registry
from shared.domain.states import READY_STATES, TERMINAL_STATES, EvidenceSource, SyncReason, SyncState, check_transition
from shared.errors import IllegalTransition, InvalidInput, NotFound, UpstreamRejected, UpstreamUnavailable
from shared.logs import log_context
from shared.observability import record_job, record_lag, traced
from shared.services.announce import announce, publish
from shared.services.dependencies import Dependencies
from shared.services.fanout import PlannedJob, send_jobs
from shared.services.receipts import receipt_hook
from shared.services.rows import RowUpdate, release_loader, update_row
from shared.services.summaries import schedule_summary

logger = logging.getLogger(__name__)


class CheckOutcome(StrEnum):
    CHECKED = "checked"  # observed and recorded (the state may or may not have changed)
    ALREADY_FINAL = "already-final"  # the row is final: nothing to do
    ALREADY_CHECKED = "already-checked"  # a redelivered job: the follow-up was ensured
    MISSING = "missing"  # no such row (the release or site is gone)


@dataclass(frozen=True)
class CheckResult:
    outcome: CheckOutcome
    state: SyncState | None = None
    reason: SyncReason | None = None
    next_check_at: datetime | None = None


def check_site(services: Dependencies, job: SiteSyncJob) -> CheckResult:
    """Run one site check.

    Raises:
        TransientError: ARM, the store, the queue or the event sink is unavailable; redeliver.
    """
    context = {"release_id": job.release_id, "site": job.site, "job_kind": job.kind.value}
    with log_context(**context), traced("acrsync.site_check", **context):
        store = services.store
        try:
            versioned = store.get_site_sync(job.release_id, job.site)
        except NotFound:
            logger.info("no row for this job; completing it")
            return CheckResult(CheckOutcome.MISSING)
        current = versioned.value
        if current.state in TERMINAL_STATES or job.check < current.checks:
            return _already_done(services, job, current)
        site = _registered_site(services, job.site)
        if site is None:
            return _record(services, job, versioned, None, Observations(now=services.clock.now()), site_gone=True)
        try:
            seen = observe(services, site, current)
        except NotFound:
            # ARM says the connected registry is gone: permanent, so record it and complete.
            return _record(services, job, versioned, site, Observations(now=services.clock.now()), site_gone=True)
        return _record(services, job, versioned, site, seen)


def _registered_site(services: Dependencies, name: str) -> Site | None:
    """The site from the (briefly cached) catalog; a miss is confirmed with the store before the
    row is failed for it."""
    cached = next((site for site in services.catalog.sites() if site.name == name), None)
    if cached is not None:
        return cached
    try:
        return services.store.get_site(name)
    except NotFound:
        return None


def record_dead_letter(services: Dependencies, body: bytes, reason: str, description: str) -> CheckResult:
    """A job the queue gave up on: the row becomes FAILED with the queue's reason as evidence.

    A release summary that was given up on is dropped: the next row change or sweep enqueues another."""
    try:
        job = decode_job(body)
    except InvalidInput as exc:
        logger.warning("dead-lettered message is not a site-sync job (%s); dropping it", exc.code)
        return CheckResult(CheckOutcome.MISSING)
    if isinstance(job, ReleaseSummaryJob):
        logger.warning("a release summary was dead-lettered (%s); the next change or sweep enqueues another", reason)
        return CheckResult(CheckOutcome.MISSING)
    now = services.clock.now()

    def decide(row: SiteSync) -> RowChange | None:
        try:
            check_transition(row.state, SyncState.FAILED)
        except IllegalTransition:
            return None
        return transition(
            row,
            SyncState.FAILED,
            SyncReason.MAX_DELIVERIES_EXCEEDED,
            source=EvidenceSource.QUEUE,
            summary="the job queue gave up on this check",
            at=now,
            details={"deadLetterReason": reason[:200], "deadLetterDescription": description[:500]},
            next_check_at=None,
        )

    with log_context(release_id=job.release_id, site=job.site):
        try:
            update = update_row(services.store, job.release_id, job.site, decide)
        except NotFound:
            return CheckResult(CheckOutcome.MISSING)
        record_job("deadlettered")
        if update.changed:
            logger.warning("check dead-lettered (%s): row marked FAILED", reason)
            schedule_summary(services.queue, services.clock, job.release_id)
            announce(services.events, update, release_loader(services.store, job.release_id), now)
        return CheckResult(CheckOutcome.CHECKED, update.after.state, update.after.reason)


def observe(services: Dependencies, site: Site, row: SiteSync) -> Observations:
    """Ask what can be asked: the site's registry first (proof makes ARM unnecessary), then ARM."""
    now = services.clock.now()
    probe, probe_error = None, None
    if site.endpoint:
        try:
            probe = services.probe.probe(
                site.endpoint, row.repository, row.digest, credentials=services.credentials.get_credentials(site.name)
            )
        except UpstreamUnavailable:
            probe_error = "unreachable"  # normal for a site outside its window or offline
        except UpstreamRejected as exc:
            probe_error = refused_by_site_registry(str(exc))
            logger.warning("the manifest check was %s", probe_error)
        if probe is not None and probe.outcome is ProbeOutcome.PRESENT:
            return Observations(now=now, probe=probe)
    arm, scope = None, None
    if site.connected_registry:
        arm = services.arm.get_connected_registry(site.connected_registry)
        if arm.token_id:
            try:
                scope = services.arm.get_sync_scope(arm.token_id)
            except NotFound:
                logger.warning("the sync token %s of the site's connected registry was not found", arm.token_id)
    return Observations(now=now, arm=arm, scope=scope, probe=probe, probe_error=probe_error)


def _record(
    services: Dependencies,
    job: SiteSyncJob,
    versioned: Versioned[SiteSync],
    site: Site | None,
    seen: Observations,
    *,
    site_gone: bool = False,
) -> CheckResult:
    now, current = seen.now, versioned.value

    def decide(row: SiteSync) -> RowChange | None:
        if row.state in TERMINAL_STATES or row.checks != current.checks:
            return None  # another writer (an edge event, an operator) moved the row meanwhile
        if site_gone or site is None:
            decision = decide_vanished_site(registered=site is not None)
        else:
            decision = decide_check(row, site, seen)
        return apply_decision(row, decision, now)

    release = release_loader(services.store, job.release_id)
    try:
        signs = receipt_hook(services, site, release)
        update = update_row(services.store, job.release_id, job.site, decide, current=versioned, on_state_change=signs)
    except NotFound:
        return CheckResult(CheckOutcome.MISSING)
    if not update.changed:
        return _already_done(services, job, update.after)
    after = update.after
    if after.next_check_at is not None:
        _send_recheck(services, after)
    if update.state_changed:
        schedule_summary(services.queue, services.clock, job.release_id)
    announce(services.events, update, release, now)
    _log(update)
    _measure(update)
    return CheckResult(CheckOutcome.CHECKED, after.state, after.reason, after.next_check_at)


def _measure(update: RowUpdate) -> None:
    after = update.after
    record_job("failed" if after.state is SyncState.FAILED else "succeeded")
    arrived = after.verified_at or after.synced_at
    if update.state_changed and after.state in READY_STATES and update.before.state not in READY_STATES and arrived:
        record_lag(after.site, (arrived - after.pushed_at).total_seconds(), after.state.value.lower())


def _already_done(services: Dependencies, job: SiteSyncJob, row: SiteSync) -> CheckResult:
    """A redelivered or superseded job: make sure the follow-up and the announcements exist."""
    if row.state not in TERMINAL_STATES and row.next_check_at is not None and job.check < row.checks:
        _send_recheck(services, row)  # same message id as before: the queue drops it if it was sent
    release = services.store.get_release(row.release_id).value
    publish(services.events, events_for_current_state(row, release, services.clock.now()))
    outcome = CheckOutcome.ALREADY_FINAL if row.state in TERMINAL_STATES else CheckOutcome.ALREADY_CHECKED
    return CheckResult(outcome, row.state, row.reason, row.next_check_at)


def _send_recheck(services: Dependencies, row: SiteSync) -> None:
    job = SiteSyncJob(row.release_id, row.site, JobKind.RECHECK, check=row.checks)
    now = services.clock.now()
    due = row.next_check_at if row.next_check_at and row.next_check_at > now else None
    send_jobs(services.queue, [PlannedJob(job, due)])


def _log(update: RowUpdate) -> None:
    after = update.after
    if update.state_changed:
        logger.info(
            "site check: %s -> %s (%s)",
            update.before.state.value,
            after.state.value,
            after.reason.value if after.reason else "-",
        )
    else:
        logger.info(
            "site check: still %s (%s); next check %s",
            after.state.value,
            after.reason.value if after.reason else "-",
            after.next_check_at,
        )
