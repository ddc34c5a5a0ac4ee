"""Operator actions on a release: re-enqueue checks for chosen sites (``acrsync retry``).

A retry never skips the state machine. FAILED and STALE rows move back to PENDING with reason
``OPERATOR_RETRY`` and an ``operator`` evidence record; rows still waiting (PENDING,
WAITING_FOR_WINDOW) just get a fresh check; rows that reached their site, were withdrawn or are
out of scope are left alone and reported as skipped. The job's message id carries the row's check
counter, so retrying twice before the check ran sends one job (the queue drops the duplicate).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from shared.domain.changes import RowChange, transition
from shared.domain.messages import JobKind, SiteSyncJob
from shared.domain.model import Site, SiteSync
from shared.domain.names import validate_site_name
from shared.domain.observations import ConnectionState
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.domain.windows import predicted_ready_at
from shared.errors import AcrSyncError, InvalidInput
from shared.services.dependencies import Dependencies
from shared.services.fanout import PlannedJob, send_jobs
from shared.services.lookup import require_release
from shared.services.rows import Decision, update_row
from shared.services.summaries import schedule_summary

logger = logging.getLogger(__name__)

FAILED_KEYWORD = "failed"
STALE_KEYWORD = "stale"
MAX_RETRY_SITES = 5000
RETRY_FROM = frozenset({SyncState.FAILED, SyncState.STALE})  # moved back to PENDING
REQUEUE_IN = frozenset({SyncState.PENDING, SyncState.WAITING_FOR_WINDOW})  # just a new job
_KEYWORD_STATES = {FAILED_KEYWORD: SyncState.FAILED, STALE_KEYWORD: SyncState.STALE}
MAX_DETAIL_LENGTH = 256


@dataclass(frozen=True)
class RetryRequest:
    """What to retry: every FAILED row, every STALE row, and/or named sites."""

    failed: bool = False
    stale: bool = False
    sites: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> RetryRequest:
        """``failed``, ``stale`` or a comma list of site names (the keywords may be mixed in).

        Raises:
            InvalidInput: ``INVALID_SITE_LIST`` or ``INVALID_SITE_NAME``.
        """
        items = [item.strip() for item in text.split(",")]
        if not text.strip() or any(not item for item in items):
            raise InvalidInput("INVALID_SITE_LIST", "sites is 'failed', 'stale' or a comma-separated list of sites")
        if len(items) > MAX_RETRY_SITES:
            raise InvalidInput("INVALID_SITE_LIST", f"at most {MAX_RETRY_SITES} sites may be named")
        names = [item for item in items if item not in _KEYWORD_STATES]
        for name in names:
            validate_site_name(name)
        return cls(failed=FAILED_KEYWORD in items, stale=STALE_KEYWORD in items, sites=tuple(dict.fromkeys(names)))


@dataclass(frozen=True)
class SkippedSite:
    site: str
    state: SyncState | None  # None: the site has no row in this release
    reason: str | None = None  # SITE_OFFLINE: not retried, since nothing can reach it (force retries anyway)


@dataclass(frozen=True)
class RetryResult:
    release_id: str
    requested: list[str]
    enqueued: list[str]
    skipped: list[SkippedSite]


def retry_sites(
    services: Dependencies,
    release_id: str,
    request: RetryRequest,
    *,
    actor: str | None = None,
    request_id: str | None = None,
    force: bool = False,
) -> RetryResult:
    """Re-enqueue checks of a release at the requested sites. A stale or failed site that is offline
    (its connected registry says so, or its row's reason does) is skipped with ``SITE_OFFLINE`` unless
    ``force``: its check would only find it offline again.

    ``actor`` (who asked) and ``request_id`` (the client's Repeatability-Request-ID) go into the
    evidence of every row moved back to PENDING.

    Raises:
        ReleaseNotFound: no such release.
        InvalidInput: ``UNKNOWN_SITE`` for a named site that is neither a site nor has a row.
        TransientError: the store or the queue is unavailable (rows already moved stay PENDING and
            the sweeper sends their overdue check).
    """
    require_release(services.store, release_id)
    store = services.store
    rows = {versioned.value.site: versioned for versioned in store.list_site_syncs(release_id)}
    catalog = {site.name: site for site in services.catalog.sites()}
    unknown = [name for name in request.sites if name not in rows and name not in catalog]
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise InvalidInput("UNKNOWN_SITE", f"no such site: {shown}")

    requested: list[str] = []
    for keyword, state in _KEYWORD_STATES.items():
        if getattr(request, keyword):
            requested.extend(site for site, row in sorted(rows.items()) if row.value.state is state)
    requested.extend(request.sites)
    requested = list(dict.fromkeys(requested))

    now = services.clock.now()
    details = {
        key: value[:MAX_DETAIL_LENGTH] for key, value in (("requested_by", actor), ("request_id", request_id)) if value
    }
    jobs: list[PlannedJob] = []
    enqueued: list[str] = []
    skipped: list[SkippedSite] = []
    for name in requested:
        if name not in rows:
            skipped.append(SkippedSite(name, None))
            continue
        site = catalog.get(name)
        if (
            not force
            and rows[name].value.state in _KEYWORD_STATES.values()
            and _offline(services, site, rows[name].value)
        ):
            skipped.append(SkippedSite(name, rows[name].value.state, SyncReason.SITE_OFFLINE.value))
            continue
        expected = predicted_ready_at(site.schedule, site.sync_window, now, now) if site is not None else None
        outcome = update_row(store, release_id, name, _reopen(now, expected, details), current=rows[name])
        row = outcome.after
        if row.state in REQUEUE_IN:
            jobs.append(PlannedJob(SiteSyncJob(release_id, name, JobKind.RETRY, check=row.checks), None))
            enqueued.append(name)
        else:
            skipped.append(SkippedSite(name, row.state))
    send_jobs(services.queue, jobs)
    if jobs:
        schedule_summary(services.queue, services.clock, release_id)
        logger.info("operator retry of release %s: %d checks enqueued", release_id, len(jobs))
    return RetryResult(release_id, requested, enqueued, skipped)


def _offline(services: Dependencies, site: Site | None, row: SiteSync) -> bool:
    """Whether the site is offline: its connected registry's state (the cached ARM read), else the row's reason."""
    if site is not None and site.connected_registry:
        try:
            return (
                services.arm.get_connected_registry(site.connected_registry).connection_state is ConnectionState.OFFLINE
            )
        except AcrSyncError:
            pass
    return row.reason is SyncReason.SITE_OFFLINE


def _reopen(now: datetime, expected: datetime | None, details: dict[str, str]) -> Decision:
    def decide(row: SiteSync) -> RowChange | None:
        if row.state not in RETRY_FROM:
            return None
        return transition(
            row,
            SyncState.PENDING,
            SyncReason.OPERATOR_RETRY,
            source=EvidenceSource.OPERATOR,
            summary=f"operator retry: {row.state.value.lower()} row checked again",
            at=now,
            details=details,
            queued_at=now,
            next_check_at=now,
            expected_ready_at=expected or row.expected_ready_at,
        )

    return decide
