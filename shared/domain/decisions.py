"""The site check's decision: given what was observed, where does a row go and when to look again.

Pure: no I/O, no clock of its own. The rules run in the order of the evidence's strength: direct
proof at the site, then permanent blockers, then ARM's inference, then window arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import islice

from shared.domain.changes import RowChange, transition
from shared.domain.links import Transfer
from shared.domain.model import Site, SiteSync
from shared.domain.observations import (
    ConnectedRegistryState,
    ConnectionState,
    ManifestObservation,
    ProbeOutcome,
    SyncScope,
)
from shared.domain.states import READY_STATES, EvidenceSource, SyncReason, SyncState
from shared.domain.transfers import Arrival, ArrivalReason, arrival_since_push, predict_arrival
from shared.domain.windows import CONTINUOUS_SCHEDULE, Window, window_at_or_after, windows_between

# With continuous sync a window opens every minute, which says nothing about how long a transfer
# over a poor link takes; lateness is then counted in cycles of this length instead.
CONTINUOUS_STALE_CYCLE = timedelta(minutes=30)
# A synced (inferred) row at a site with an OCI endpoint is re-checked for proof for this many sync
# cycles after it synced; the checks before it synced do not count against it.
VERIFY_CYCLES = 2
MIN_RECHECK = timedelta(minutes=1)
MAX_RECHECK = timedelta(minutes=15)
MAX_CHECK_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class Observations:
    """What a check could learn about one site right now; ``None`` where a source was not asked."""

    now: datetime
    arm: ConnectedRegistryState | None = None
    scope: SyncScope | None = None
    probe: ManifestObservation | None = None
    probe_error: str | None = None  # why the site's registry could not answer (not a secret)


@dataclass(frozen=True)
class CheckDecision:
    """Where the row goes, why, on what evidence, and when (if ever) to check again."""

    state: SyncState
    reason: SyncReason
    source: EvidenceSource
    summary: str
    expected_ready_at: datetime | None
    next_check_at: datetime | None
    observed_digest: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    arrived_at: datetime | None = None  # when the digest reached the site, when an observation says so
    offline_since: datetime | None = None  # set while ARM says the site is offline (no estimate then)


@dataclass(frozen=True)
class _Check:
    """One check's inputs, with the schedule ARM reports preferred over the configured one."""

    row: SiteSync
    site: Site
    seen: Observations
    schedule: str | None
    sync_window: timedelta | None
    window: Window
    details: dict[str, str]

    @property
    def now(self) -> datetime:
        return self.seen.now

    @property
    def continuous(self) -> bool:
        return self.schedule is None or self.schedule.strip() == CONTINUOUS_SCHEDULE

    def decision(
        self,
        state: SyncState,
        reason: SyncReason,
        source: EvidenceSource,
        summary: str,
        *,
        expected: datetime | None = None,
        next_check: datetime | None = None,
        digest: str | None = None,
        arrived: datetime | None = None,
    ) -> CheckDecision:
        return CheckDecision(state, reason, source, summary, expected, next_check, digest, self.details, arrived)

    def offline_since(self) -> datetime | None:
        """While ARM says the site is offline inside its sync window (outside one, a scheduled connected
        registry is offline by design): since when (its last activity, else when this row first saw it
        offline, else now); ``None`` when it is not."""
        arm = self.seen.arm
        if arm is None or arm.connection_state is not ConnectionState.OFFLINE or not self.window.contains(self.now):
            return None
        return arm.last_activity_time or self.row.offline_since or self.now

    def while_offline(self, decision: CheckDecision) -> CheckDecision:
        """An offline site has no expected ready time: nothing says when it comes back."""
        since = self.offline_since()
        if since is None:
            return decision
        return replace(decision, expected_ready_at=None, offline_since=since)

    def arrival(self) -> Arrival | None:
        """When what the site still needs is there at its link's rate; ``None`` while the release is not
        weighed (or the row predates weighing)."""
        transfer = self.row.transfer
        if transfer is None:
            return None
        return arrival_since_push(transfer, self.schedule, self.sync_window, self.row.pushed_at, self.now)

    def expected(self) -> datetime | None:
        """The expected ready time: the transfer's arrival where the rate is known, else the window's close;
        ``None`` when the bytes never fit a window."""
        arrival = self.arrival()
        if arrival is None or arrival.reason in (ArrivalReason.RATE_UNKNOWN, ArrivalReason.NOTHING_TO_MOVE):
            return self.window.closes_at
        return arrival.expected_at

    def wont_fit(self) -> bool:
        arrival = self.arrival()
        return arrival is not None and arrival.reason in _WONT_FIT

    def planned_misses(self, cycle: timedelta) -> int:
        """Windows (with continuous sync, cycles) the transfer was predicted at push to need before it
        arrives: missing those is expected, not late."""
        transfer = self.row.transfer
        if transfer is None:
            return 0
        arrival = predict_arrival(transfer.blobs, transfer.rate, self.schedule, self.sync_window, self.row.pushed_at)
        if arrival.expected_at is None or arrival.reason not in _WONT_FIT | {ArrivalReason.FITS}:
            return 0
        if self.continuous:
            return int((arrival.expected_at - self.row.pushed_at) / cycle)
        return arrival.windows_missed

    def next_look(self) -> datetime:
        """Soon while the window is open; otherwise a little after the next one opens."""
        if self.window.contains(self.now):
            return self.now + max(MIN_RECHECK, min(MAX_RECHECK, self._window_length() / 4))
        return self.window.opens_at + check_margin(self.window)

    def _window_length(self) -> timedelta:
        return self.window.closes_at - self.window.opens_at


_WONT_FIT = frozenset({ArrivalReason.EXCEEDS_WINDOW, ArrivalReason.NEVER_FITS})


def check_margin(window: Window) -> timedelta:
    """How long after a window opens to look: time for the site to pull the sync message."""
    return min(MAX_CHECK_MARGIN, (window.closes_at - window.opens_at) / 4)


@dataclass(frozen=True)
class FirstCheck:
    """Where a fresh row starts and when its first check runs (``check_at`` ``None``: at once)."""

    state: SyncState
    reason: SyncReason
    expected_ready_at: datetime
    check_at: datetime | None


def first_check(site: Site, now: datetime) -> FirstCheck:
    """A fresh row inside an open window is checked at once; otherwise it waits for the next opening
    (plus the check margin), and either way it is expected ready when that window closes."""
    window = window_at_or_after(site.schedule, site.sync_window, now)
    if window.contains(now):
        return FirstCheck(SyncState.PENDING, SyncReason.AWAITING_FIRST_CHECK, window.closes_at, None)
    return FirstCheck(
        SyncState.WAITING_FOR_WINDOW, SyncReason.WINDOW_CLOSED, window.closes_at, window.opens_at + check_margin(window)
    )


def with_transfer(row: SiteSync, site: Site, transfer: Transfer, now: datetime) -> SiteSync:
    """The row with what the site still needs of the release; a row waiting for it gets the estimate that
    follows (and ``EXCEEDS_WINDOW`` when the bytes do not fit the next window), at once rather than at its
    next check. A row that already arrived, went stale or is offline keeps its estimate."""
    planned = replace(row, transfer=transfer)
    if row.state not in (SyncState.PENDING, SyncState.WAITING_FOR_WINDOW) or row.offline_since is not None:
        return planned
    check = _Check(
        planned,
        site,
        Observations(now=now),
        site.schedule,
        site.sync_window,
        window_at_or_after(site.schedule, site.sync_window, now),
        {},
    )
    reason = SyncReason.EXCEEDS_WINDOW if check.wont_fit() else row.reason
    return replace(planned, expected_ready_at=check.expected(), reason=reason)


def decide_vanished_site(*, registered: bool) -> CheckDecision:
    """A check whose site is gone fails for good: ``registered`` when acrsync still knows the site but
    its connected registry no longer exists in Azure, else the site itself was removed from acrsync."""
    if registered:
        return CheckDecision(
            SyncState.FAILED,
            SyncReason.SITE_NOT_FOUND,
            EvidenceSource.ARM_LAST_SYNC,
            "the site's connected registry no longer exists in Azure",
            None,
            None,
        )
    return CheckDecision(
        SyncState.FAILED,
        SyncReason.SITE_NOT_FOUND,
        EvidenceSource.OPERATOR,
        "the site is no longer registered with acrsync",
        None,
        None,
    )


def apply_decision(row: SiteSync, decision: CheckDecision, now: datetime) -> RowChange:
    """The row change a check's decision makes: the check counted, the next check and prediction set,
    and a transition with its evidence when the state moves (a row that stays only updates in place).

    Raises:
        IllegalTransition: the decision's state is not reachable from the row's.
    """
    changes: dict[str, object] = {
        "expected_ready_at": decision.expected_ready_at,
        "next_check_at": decision.next_check_at,
        "checks": row.checks + 1,
        "offline_since": decision.offline_since,
    }
    if decision.arrived_at is not None and decision.state is SyncState.SYNCED:
        changes["synced_at"] = decision.arrived_at
    if decision.state is row.state:
        return RowChange(replace(row, reason=decision.reason, updated_at=now, **changes))  # type: ignore[arg-type]
    return transition(
        row,
        decision.state,
        decision.reason,
        source=decision.source,
        summary=decision.summary,
        at=now,
        details=decision.details,
        observed_digest=decision.observed_digest,
        **changes,
    )


def decide_check(row: SiteSync, site: Site, seen: Observations) -> CheckDecision:
    """Decide one check of ``row`` at ``site`` from ``seen``."""
    if seen.arm is not None:
        seen = replace(seen, arm=seen.arm.as_believed(seen.now))
    arm = seen.arm
    schedule = (arm.schedule if arm and arm.schedule else site.schedule) or None
    sync_window = (arm.sync_window if arm and arm.sync_window else site.sync_window) or None
    check = _Check(
        row, site, seen, schedule, sync_window, window_at_or_after(schedule, sync_window, seen.now), _details(seen)
    )
    for rule in _RULES:
        decision = rule(check)
        if decision is not None:
            return decision
    raise AssertionError("the last rule always decides")  # pragma: no cover


def _proof_at_the_site(check: _Check) -> CheckDecision | None:
    probe = check.seen.probe
    if probe is None or probe.outcome is not ProbeOutcome.PRESENT:
        return None
    return check.decision(
        SyncState.VERIFIED,
        SyncReason.MANIFEST_PRESENT,
        EvidenceSource.OCI_PROBE,
        "the site's registry holds the manifest",
        digest=probe.digest or check.row.digest,
    )


def _already_synced(check: _Check) -> CheckDecision | None:
    row = check.row
    if row.state not in READY_STATES:
        return None
    return check.decision(
        row.state,
        row.reason or SyncReason.SYNCED_AFTER_PUSH,
        row.evidence_source or EvidenceSource.ARM_LAST_SYNC,
        "still synced; no direct proof yet",
        next_check=_verify_check(check),
    )


def _out_of_sync_scope(check: _Check) -> CheckDecision | None:
    """The scope map decides what syncs: a repository outside it never arrives, whatever ARM says."""
    scope = check.seen.scope
    if scope is None or scope.covers(check.row.repository):
        return None
    return check.decision(
        SyncState.FAILED,
        SyncReason.REPO_NOT_IN_SCOPE,
        EvidenceSource.ARM_LAST_SYNC,
        "the repository is not in the site's sync scope map",
    )


def _cannot_sync_any_more(check: _Check) -> CheckDecision | None:
    """Blockers that stop future syncs; they run after ARM's inference, since a token that expired
    after the site synced the digest does not undo the delivery."""
    scope, arm = check.seen.scope, check.seen.arm
    blocker: tuple[SyncReason, str] | None = None
    if scope is not None and (not scope.token_enabled or scope.expired(check.now)):
        blocker = SyncReason.SYNC_TOKEN_EXPIRED, "the site's sync token is disabled or expired"
    elif arm is not None and not arm.active:
        blocker = SyncReason.SITE_INACTIVE, "the connected registry is not activated on site"
    if blocker is None:
        return None
    return check.decision(SyncState.FAILED, blocker[0], EvidenceSource.ARM_LAST_SYNC, blocker[1])


def _synced_according_to_arm(check: _Check) -> CheckDecision | None:
    arm, probe = check.seen.arm, check.seen.probe
    if arm is None or arm.connection_state is ConnectionState.UNHEALTHY or arm.last_sync_time is None:
        return None
    if arm.last_sync_time < check.row.pushed_at:
        return None
    if probe is not None and probe.outcome is ProbeOutcome.ABSENT:
        return None  # the site's own registry says the manifest is not there: proof beats inference
    return check.decision(
        SyncState.SYNCED,
        SyncReason.SYNCED_AFTER_PUSH,
        EvidenceSource.ARM_LAST_SYNC,
        "the site synced after the push",
        next_check=_verify_check(check),
        arrived=arm.last_sync_time,  # "since when": the sync ARM reports, not the moment we looked
    )


def _stale(check: _Check) -> CheckDecision | None:
    found = _stale_reason(check)
    if found is None:
        return None
    # Once stale, a row stays stale until the digest arrives: no flapping back to waiting.
    return check.while_offline(
        check.decision(
            SyncState.STALE,
            found[0],
            EvidenceSource.SCHEDULE,
            found[1],
            expected=check.expected(),
            next_check=check.next_look(),
        )
    )


def _waiting(check: _Check) -> CheckDecision:
    row, arm = check.row, check.seen.arm
    if check.offline_since() is not None:
        return check.while_offline(
            check.decision(
                row.state,
                SyncReason.SITE_OFFLINE,
                EvidenceSource.SCHEDULE,
                "the sync window is open but the connected registry is offline: no expected ready time",
                next_check=check.next_look(),
            )
        )
    if check.window.contains(check.now):
        reason, summary = SyncReason.SYNC_IN_PROGRESS, "the sync window is open; the digest is not there yet"
        if arm is not None and arm.connection_state is ConnectionState.UNHEALTHY:
            reason = SyncReason.SITE_UNHEALTHY
        elif check.wont_fit():
            reason, summary = SyncReason.EXCEEDS_WINDOW, f"the sync window is open; {_TOO_BIG}"
        return check.decision(
            row.state, reason, EvidenceSource.SCHEDULE, summary, expected=check.expected(), next_check=check.next_look()
        )
    state = SyncState.WAITING_FOR_WINDOW if row.state is SyncState.PENDING else row.state
    reason, summary = SyncReason.WINDOW_CLOSED, "outside the site's sync window: expected offline until it opens"
    if check.wont_fit():
        reason, summary = SyncReason.EXCEEDS_WINDOW, f"outside the site's sync window; {_TOO_BIG}"
    return check.decision(
        state, reason, EvidenceSource.SCHEDULE, summary, expected=check.expected(), next_check=check.next_look()
    )


_TOO_BIG = "what the site still needs does not fit the next window at its link's rate"


_RULES: tuple[Callable[[_Check], CheckDecision | None], ...] = (
    _proof_at_the_site,
    _already_synced,
    _out_of_sync_scope,
    _synced_according_to_arm,
    _cannot_sync_any_more,
    _stale,
    _waiting,
)


def _stale_reason(check: _Check) -> tuple[SyncReason, str] | None:
    row, site, arm, now = check.row, check.site, check.seen.arm, check.now
    allowed = site.stale_after_windows
    ttl = (arm.message_ttl if arm and arm.message_ttl else None) or site.message_ttl
    cycle = CONTINUOUS_STALE_CYCLE if check.continuous else _cycle(check)
    if now >= row.pushed_at + ttl:
        return SyncReason.MESSAGE_TTL_EXPIRED, "past the message TTL: the parent no longer holds the sync message"
    if arm is not None and arm.last_activity_time is not None and now - arm.last_activity_time >= allowed * cycle:
        return SyncReason.SITE_SILENT, f"no activity from the site for {allowed} sync cycles"
    allowed_misses = allowed + check.planned_misses(cycle)
    if _windows_missed(check, allowed_misses, cycle) >= allowed_misses:
        return SyncReason.WINDOW_MISSED, f"{allowed} sync windows closed since the push and the digest is still missing"
    return None


def _windows_missed(check: _Check, enough: int, cycle: timedelta) -> int:
    if check.continuous:
        return int((check.now - check.row.pushed_at) / cycle)
    windows = windows_between(check.schedule, check.sync_window, check.row.pushed_at, check.now)
    return sum(1 for _ in islice((w for w in windows if w.closes_at <= check.now), enough))


def _cycle(check: _Check) -> timedelta:
    """The time between two window openings."""
    first = check.window
    second = window_at_or_after(check.schedule, check.sync_window, first.closes_at)
    return max(second.opens_at - first.opens_at, timedelta(minutes=1))


def _verify_check(check: _Check) -> datetime | None:
    """A synced row is worth re-checking only where a direct probe can turn it into proof, and only
    for a few cycles after it synced."""
    if check.site.endpoint is None:
        return None
    synced_at = check.row.synced_at or check.now
    cycle = CONTINUOUS_STALE_CYCLE if check.continuous else _cycle(check)
    if check.now >= synced_at + VERIFY_CYCLES * cycle:
        return None
    return check.next_look()


def _details(seen: Observations) -> dict[str, str]:
    details: dict[str, str] = {}
    if seen.arm is not None:
        details.update(seen.arm.evidence_details())
    if seen.scope is not None:
        details["syncToken"] = "enabled" if seen.scope.token_enabled else "disabled"
    if seen.probe is not None:
        details.update(seen.probe.evidence_details())
    if seen.probe_error:
        details["probeError"] = seen.probe_error
    return details
