"""Fan-out: which sites must get a release, one row per site, one first job per in-scope site.

Crash safety comes from ordering and idempotency: the release header (with the planned counters)
is written first, then the rows (insert-if-absent), then the jobs (deterministic message ids, so
the queue drops re-sends), and last ``publish_release``, which doubles as the fan-out-complete
marker. A redelivered event that finds the release unpublished simply runs the fan-out again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.domain.changes import RowChange
from shared.domain.decisions import FirstCheck, first_check
from shared.domain.messages import JobKind, SiteSyncJob
from shared.domain.model import Release, Site, SiteSync
from shared.domain.states import READY_STATES, TERMINAL_STATES, SyncReason, SyncState
from shared.ports import JobQueue, OutgoingMessage, StateStore
from shared.services.rows import Decision, recount, update_row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedJob:
    job: SiteSyncJob
    scheduled_at: datetime | None


@dataclass(frozen=True)
class FanoutPlan:
    """Rows for every site (SKIPPED ones say why) and a first job for every in-scope site."""

    rows: list[SiteSync]
    jobs: list[PlannedJob]

    @property
    def counts(self) -> dict[SyncState, int]:
        counts: dict[SyncState, int] = {}
        for row in self.rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts


@dataclass(frozen=True)
class FanoutResult:
    rows_created: int
    jobs_sent: int
    send_batches: int


def plan_fanout(
    release: Release, sites: Iterable[Site], now: datetime, *, kind: JobKind = JobKind.FANOUT
) -> FanoutPlan:
    """Decide each site's first row and job for ``release`` (pure)."""
    rows: list[SiteSync] = []
    jobs: list[PlannedJob] = []
    # Thousands of sites share a handful of schedules: work out each schedule's window once.
    windows: dict[tuple[str | None, timedelta | None], FirstCheck] = {}
    for site in sorted(sites, key=lambda s: s.name):
        refusal = site.admits(release.repository, release.tags)
        if refusal is not None:
            rows.append(new_row(release, site.name, SyncState.SKIPPED, refusal, now, expected=None))
            continue
        key = (site.schedule, site.sync_window)
        if key not in windows:
            windows[key] = first_check(site, now)
        start = windows[key]
        row = new_row(release, site.name, start.state, start.reason, now, expected=start.expected_ready_at)
        rows.append(replace(row, next_check_at=start.check_at or now))
        jobs.append(PlannedJob(SiteSyncJob(release.release_id, site.name, kind), start.check_at))
    return FanoutPlan(rows=rows, jobs=jobs)


def to_message(planned: PlannedJob) -> OutgoingMessage:
    job = planned.job
    return OutgoingMessage(
        message_id=job.message_id,
        body=job.encode(),
        session_id=job.session_id,
        scheduled_at=planned.scheduled_at,
        properties={"release_id": job.release_id, "site": job.site, "kind": job.kind.value},
    )


def send_jobs(queue: JobQueue, jobs: Sequence[PlannedJob]) -> tuple[int, int]:
    if not jobs:
        return 0, 0
    report = queue.send_messages([to_message(job) for job in jobs])
    return report.messages, report.batches


def fan_out_new(
    store: StateStore,
    queue: JobQueue,
    release: Release,
    plan: FanoutPlan,
    *,
    follow_up: Sequence[OutgoingMessage] = (),
) -> FanoutResult:
    """Complete the fan-out of a release whose header was just created with ``plan.counts``: the
    rows, the jobs (with ``follow_up``, in the same sends: the release's first summary, which
    records the rows in the site ledger), the listing."""
    created = store.add_site_syncs(plan.rows)
    report = queue.send_messages([*map(to_message, plan.jobs), *follow_up])
    sent, batches = report.messages - len(follow_up), report.batches
    store.publish_release(release)
    logger.info(
        "fanned out release %s to %s sites (%s rows, %s jobs)", release.release_id, len(plan.jobs), created, sent
    )
    return FanoutResult(rows_created=created, jobs_sent=sent, send_batches=batches)


def resume_fan_out(
    store: StateStore, queue: JobQueue, release: Release, sites: Sequence[Site], now: datetime
) -> FanoutResult:
    """Finish an interrupted fan-out (or one started by an edge event): idempotent in every step."""
    plan = plan_fanout(release, sites, now)
    created = store.add_site_syncs(plan.rows)
    store.seed_ledger(plan.rows)  # an interrupted fan-out is rare: its rows are recorded at once
    recount(store, release.release_id, now)
    waiting = {
        row.value.site
        for row in store.list_site_syncs(release.release_id)
        if row.value.state not in TERMINAL_STATES and row.value.state not in READY_STATES
    }
    sent, batches = send_jobs(queue, [job for job in plan.jobs if job.job.site in waiting])
    store.publish_release(store.get_release(release.release_id).value)
    logger.info("resumed fan-out of release %s: %s rows created, %s jobs sent", release.release_id, created, sent)
    return FanoutResult(rows_created=created, jobs_sent=sent, send_batches=batches)


def widen_fan_out(
    store: StateStore, queue: JobQueue, release: Release, sites: Sequence[Site], now: datetime, *, kind: JobKind
) -> FanoutResult:
    """Bring sites newly in scope into a published release: new sites get rows, SKIPPED rows the
    release now fits (a new tag, a grown site scope) reopen, and each gets a job. With
    ``kind=BACKFILL`` sites still waiting for the release get a fresh check too."""
    plan = plan_fanout(release, sites, now, kind=kind)
    existing = {row.value.site: row.value for row in store.list_site_syncs(release.release_id)}
    added = [row for row in plan.rows if row.site not in existing]
    created = store.add_site_syncs(added)
    store.seed_ledger(added)  # a grown scope is rare: the new rows are recorded at once
    planned_rows = {row.site: row for row in plan.rows}
    jobs: list[PlannedJob] = []
    reopened = 0
    for planned in plan.jobs:
        site = planned.job.site
        row = existing.get(site)
        if row is None:
            jobs.append(planned)
        elif row.state is SyncState.SKIPPED:
            reopened += update_row(store, release.release_id, site, _reopen(planned_rows[site], now)).changed
            jobs.append(planned)
        elif kind is JobKind.BACKFILL and row.state not in TERMINAL_STATES | READY_STATES:
            jobs.append(PlannedJob(SiteSyncJob(release.release_id, site, kind, row.checks), None))
    if created or reopened:
        recount(store, release.release_id, now)  # rare (a new tag, a grown scope): counted at once
    sent, batches = send_jobs(queue, jobs)
    return FanoutResult(rows_created=created, jobs_sent=sent, send_batches=batches)


def _reopen(planned: SiteSync, now: datetime) -> Decision:
    def decide(row: SiteSync) -> RowChange | None:
        if row.state is not SyncState.SKIPPED:
            return None
        moved = row.moved_to(
            SyncState.PENDING, SyncReason.SCOPE_GREW, now, queued_at=now, expected_ready_at=planned.expected_ready_at
        )
        return RowChange(moved)

    return decide


def new_row(
    release: Release, site: str, state: SyncState, reason: SyncReason, now: datetime, *, expected: datetime | None
) -> SiteSync:
    return SiteSync(
        release_id=release.release_id,
        site=site,
        repository=release.repository,
        digest=release.digest,
        pushed_at=release.pushed_at,
        state=state,
        reason=reason,
        updated_at=now,
        queued_at=now if state is not SyncState.SKIPPED else None,
        expected_ready_at=expected,
        in_ledger=True,
    )
