"""The readiness gate: may a pipeline roll a release out now? Pure policy, no I/O.

A gate looks at the site-sync rows of one release through a *selection* (explicit sites, one ring,
or every in-scope site) and a *policy* (the fraction of selected sites that must hold the digest,
and whether every critical site must). It answers one of three states:

* ``ready`` — the policy is met now;
* ``pending`` — not met yet, but it still can be: ``retry_after`` says when to look again, from the
  earliest predicted time among the pending sites (their sync window's close, or the next check
  when that comes sooner), clamped to [``MIN_RETRY_AFTER``, ``MAX_RETRY_AFTER``];
* ``failed`` — it can no longer be met: too many sites are blocked (STALE, FAILED, WITHDRAWN, or
  an explicit pick the release is out of scope for), a critical site is blocked, the release was
  withdrawn, or the selection is empty; or, with ``require_rollback``, a selected in-scope site
  could not roll back to the previous release of the same repository (``ROLLBACK_NOT_READY``).

With ``require_running`` a site counts as ready only once its workloads are seen running the
digest (``SiteSync.running_pods``, :mod:`shared.domain.workloads`), not merely when its registry holds
it; a site that holds it and does not run it yet is pending with reason ``NOT_RUNNING``.

Rollback readiness per site is worked out elsewhere (:mod:`shared.services.rollback`, it needs the
store) and handed in as :class:`RollbackCheck` values; the verdict always carries it when given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from shared.domain.model import Release, Site, SiteSync
from shared.domain.names import validate_site_name
from shared.domain.states import READY_STATES, SyncReason, SyncState
from shared.errors import InvalidInput

MIN_RETRY_AFTER = 10
MAX_RETRY_AFTER = 3600
# Only when no pending site carries any prediction (no expected ready time, no next check).
UNPREDICTED_RETRY_AFTER = 60
MAX_SELECTED_SITES = 5000
MAX_RING_LENGTH = 128

BLOCKED_STATES = frozenset({SyncState.STALE, SyncState.FAILED, SyncState.WITHDRAWN})
PENDING_STATES = frozenset({SyncState.PENDING, SyncState.WAITING_FOR_WINDOW})
# Shown as the reason of an explicit pick the release does not go to (SKIPPED or no row at all).
SITE_OUT_OF_SCOPE = "SITE_OUT_OF_SCOPE"
# Shown as the reason of a site that holds the release but does not run it yet (require_running).
NOT_RUNNING = "NOT_RUNNING"


class GateState(StrEnum):
    READY = "ready"
    PENDING = "pending"
    FAILED = "failed"


class FailureCode(StrEnum):
    RELEASE_WITHDRAWN = "RELEASE_WITHDRAWN"
    NO_SITES_SELECTED = "NO_SITES_SELECTED"
    CRITICAL_SITE_BLOCKED = "CRITICAL_SITE_BLOCKED"
    TOO_MANY_BLOCKED = "TOO_MANY_BLOCKED"
    ROLLBACK_NOT_READY = "ROLLBACK_NOT_READY"
    APPROVAL_MISSING = "APPROVAL_MISSING"  # asked for an approval and the release has no approval link yet


@dataclass(frozen=True)
class GateSelection:
    """Which sites the gate looks at: explicit ``sites``, one ``ring``, or (neither) every in-scope site."""

    sites: tuple[str, ...] | None = None
    ring: str | None = None

    def __post_init__(self) -> None:
        if self.sites is not None and self.ring is not None:
            raise InvalidInput("CONFLICTING_SELECTION", "select sites or a ring, not both")
        if self.sites is not None and not self.sites:
            raise InvalidInput("INVALID_SITE_LIST", "sites must name at least one site")
        if self.sites is not None and len(self.sites) > MAX_SELECTED_SITES:
            raise InvalidInput("INVALID_SITE_LIST", f"at most {MAX_SELECTED_SITES} sites may be selected")
        if self.ring is not None and not (0 < len(self.ring) <= MAX_RING_LENGTH):
            raise InvalidInput("INVALID_RING", f"a ring name has 1 to {MAX_RING_LENGTH} characters")

    @property
    def kind(self) -> str:
        return "sites" if self.sites is not None else "ring" if self.ring is not None else "all"


@dataclass(frozen=True)
class GatePolicy:
    """``min_ready``: the fraction (0 < x <= 1) of selected sites that must be ready;
    ``require_all_critical``: every selected critical site must be ready too."""

    min_ready: float = 1.0
    require_all_critical: bool = True
    require_rollback: bool = False  # every selected in-scope site must be able to roll back to N-1
    require_running: bool = False  # a site is ready once it runs the digest, not when it holds it
    # STALE sites block (the gate can fail on them); False: they count as pending, since a stale row
    # keeps being checked and may still arrive (what `acrsync wait` asks for unless --fail-on stale).
    stale_blocks: bool = True
    require_approval: bool = False  # the release must carry an approval link (its annotations)

    def __post_init__(self) -> None:
        valid = isinstance(self.min_ready, int | float) and not isinstance(self.min_ready, bool)
        if not valid or not math.isfinite(self.min_ready) or not 0 < self.min_ready <= 1:
            raise InvalidInput("INVALID_MIN_READY", "min_ready must be a fraction greater than 0 and at most 1")

    def required(self, total: int) -> int:
        """How many of ``total`` sites must be ready: ``ceil(min_ready * total)``, at least one.

        Rounded to nine places first, so 0.95 of 20 sites needs 19 (not 20 through float error).
        """
        return max(1, math.ceil(round(self.min_ready * total, 9)))


@dataclass(frozen=True)
class GateSite:
    """One selected site as the gate saw it; ``state`` is ``None`` for a pick with no row."""

    site: str
    state: SyncState | None
    reason: str | None
    critical: bool
    expected_ready_at: datetime | None = None
    next_check_at: datetime | None = None
    running: bool = False  # pods at the site run this digest (the last observation)
    offline_since: datetime | None = None

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES

    @property
    def blocked(self) -> bool:
        return self.state is None or self.state in BLOCKED_STATES or self.reason == SITE_OUT_OF_SCOPE

    def predicted_at(self, now: datetime) -> datetime | None:
        """When this pending site may change: its expected ready time (overdue: look again soon), or its
        next check when sooner and still ahead. A site whose bytes do not fit the next window is not
        expected to change before its estimate, so the checks in between do not count."""
        predicted = self.expected_ready_at
        if self.reason == SyncReason.EXCEEDS_WINDOW.value and predicted is not None and predicted > now:
            return predicted
        upcoming = self.next_check_at if self.next_check_at is not None and self.next_check_at > now else None
        if upcoming is not None and (predicted is None or upcoming < predicted):
            predicted = upcoming
        return predicted

    def expected_at(self, now: datetime) -> datetime | None:
        """When this pending site is expected ready (not a next check: that is only a look); ``None``
        when nothing ahead says so, and for a STALE site, which has already missed what was expected."""
        if self.state is SyncState.STALE:
            return None
        expected = self.expected_ready_at
        return expected if expected is not None and expected > now else None


@dataclass(frozen=True)
class RollbackCheck:
    """Whether one site could roll back to the previous release of the repository, and why (not)."""

    site: str
    ready: bool
    reason: str
    previous_release_id: str | None = None


@dataclass(frozen=True)
class GateFailure:
    code: FailureCode
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateVerdict:
    state: GateState
    release_id: str
    selection: GateSelection
    policy: GatePolicy
    ready: int
    total: int
    required: int
    pending: tuple[GateSite, ...] = ()
    blocked: tuple[GateSite, ...] = ()
    reasons: tuple[GateFailure, ...] = ()
    retry_after: int | None = None  # seconds; set when pending
    next_change_at: datetime | None = None  # the prediction retry_after came from
    rollback_ready: bool | None = None  # None when no rollback checks were given
    rollback: tuple[RollbackCheck, ...] = ()  # per selected in-scope site, in selection order
    running: int = 0  # selected sites seen running the digest
    # When the policy should be met, from the pending sites' expected ready times; None with the reason
    # when it cannot be told (a site offline or stale with no prediction), or when not pending. A reason
    # with a time says why it is late (sites whose bytes do not fit their next window).
    expected_ready_at: datetime | None = None
    expected_ready_reason: str | None = None


def parse_site_list(text: str) -> tuple[str, ...]:
    """``a,b,c`` → ``("a", "b", "c")``: names checked, duplicates dropped, order kept.

    Raises:
        InvalidInput: ``INVALID_SITE_LIST`` for an empty list or item, ``INVALID_SITE_NAME``.
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise InvalidInput("INVALID_SITE_LIST", "sites is a comma-separated list of site names without empty items")
    if len(items) > MAX_SELECTED_SITES:
        raise InvalidInput("INVALID_SITE_LIST", f"at most {MAX_SELECTED_SITES} sites may be named")
    for item in items:
        validate_site_name(item)
    return tuple(dict.fromkeys(items))


def evaluate(
    release: Release,
    rows: Sequence[SiteSync],
    sites: Iterable[Site],
    *,
    selection: GateSelection,
    policy: GatePolicy,
    now: datetime,
    rollback: Mapping[str, RollbackCheck] | None = None,
) -> GateVerdict:
    """Evaluate the gate for ``release`` with its ``rows`` and the site catalog ``sites``.

    ``rollback`` holds per-site rollback checks; with ``policy.require_rollback`` a selected in-scope
    site without one counts as unable to roll back.

    Raises:
        InvalidInput: ``UNKNOWN_SITE`` for an explicit pick that is neither a site nor has a row,
            ``UNKNOWN_RING`` for a ring no site belongs to.
    """
    catalog = {site.name: site for site in sites}
    selected = _select(rows, catalog, selection)
    if policy.require_running:
        # Held but not running yet: still on its way, as far as this gate is concerned.
        selected = [
            replace(entry, state=SyncState.PENDING, reason=NOT_RUNNING) if entry.ready and not entry.running else entry
            for entry in selected
        ]
    total = len(selected)
    ready = sum(1 for entry in selected if entry.ready)

    def blocks(entry: GateSite) -> bool:
        return entry.blocked and (policy.stale_blocks or entry.state is not SyncState.STALE)

    blocked = tuple(entry for entry in selected if blocks(entry))
    pending = tuple(entry for entry in selected if not entry.ready and not blocks(entry))
    required = policy.required(total)

    reasons: list[GateFailure] = []
    if release.withdrawn_at is not None:
        reasons.append(GateFailure(FailureCode.RELEASE_WITHDRAWN))
    if policy.require_approval and not release.approved:
        reasons.append(GateFailure(FailureCode.APPROVAL_MISSING))
    if total == 0:
        reasons.append(GateFailure(FailureCode.NO_SITES_SELECTED))
    critical_blocked = tuple(entry.site for entry in blocked if entry.critical)
    if policy.require_all_critical and critical_blocked:
        reasons.append(GateFailure(FailureCode.CRITICAL_SITE_BLOCKED, critical_blocked))
    if total and total - len(blocked) < required:
        reasons.append(GateFailure(FailureCode.TOO_MANY_BLOCKED, tuple(entry.site for entry in blocked)))
    checks: tuple[RollbackCheck, ...] = ()
    if rollback is not None or policy.require_rollback:
        known = rollback or {}
        checks = tuple(
            known.get(entry.site) or RollbackCheck(entry.site, False, "ROLLBACK_UNKNOWN")
            for entry in selected
            if entry.reason != SITE_OUT_OF_SCOPE
        )
    unable = tuple(check.site for check in checks if not check.ready)
    if policy.require_rollback and unable:
        reasons.append(GateFailure(FailureCode.ROLLBACK_NOT_READY, unable))

    critical_waiting = policy.require_all_critical and any(entry.critical for entry in pending)
    if reasons:
        state = GateState.FAILED
    elif ready >= required and not critical_waiting:
        state = GateState.READY
    else:
        state = GateState.PENDING
    retry_after, next_change_at = _retry_after(pending, now) if state is GateState.PENDING else (None, None)
    expected_at, expected_reason = (
        _estimate(pending, required - ready, policy, now) if state is GateState.PENDING else (None, None)
    )
    return GateVerdict(
        state=state,
        release_id=release.release_id,
        selection=selection,
        policy=policy,
        ready=ready,
        total=total,
        required=required,
        pending=pending,
        blocked=blocked,
        reasons=tuple(reasons),
        retry_after=retry_after,
        next_change_at=next_change_at,
        rollback_ready=(bool(checks) and not unable) if rollback is not None or policy.require_rollback else None,
        rollback=checks,
        running=sum(1 for entry in selected if entry.running),
        expected_ready_at=expected_at,
        expected_ready_reason=expected_reason,
    )


def _estimate(
    pending: Sequence[GateSite], needed: int, policy: GatePolicy, now: datetime
) -> tuple[datetime | None, str | None]:
    """When ``needed`` more sites (and every pending critical one, when required) are expected ready."""
    critical = [entry for entry in pending if entry.critical] if policy.require_all_critical else []
    unknown = [entry for entry in critical if entry.expected_at(now) is None]
    expected = sorted(t for t in (entry.expected_at(now) for entry in pending) if t is not None)
    if unknown or len(expected) < needed:
        blind = unknown or [entry for entry in pending if entry.expected_at(now) is None]
        shown = ", ".join(_why_blind(e) for e in blind[:5])
        more = f" and {len(blind) - 5} more" if len(blind) > 5 else ""
        return None, f"no expected ready time for {shown}{more}"
    moments = ([expected[needed - 1]] if needed > 0 else []) + [t for e in critical if (t := e.expected_at(now))]
    if not moments:
        return None, None
    at = max(moments)
    # Said with the estimate: it is later than the next windows because some sites' bytes do not fit them.
    late = [e.site for e in pending if e.reason == SyncReason.EXCEEDS_WINDOW.value and (e.expected_at(now) or at) <= at]
    if late:
        more = f" and {len(late) - 5} more" if len(late) > 5 else ""
        return at, f"EXCEEDS_WINDOW: {', '.join(late[:5])}{more} need more than their next sync window"
    return at, None


def _why_blind(entry: GateSite) -> str:
    if entry.offline_since is not None:
        return f"{entry.site} (offline since {entry.offline_since.isoformat()})"
    return f"{entry.site} ({entry.state.value if entry.state else 'no row'} {entry.reason or ''})".replace(" )", ")")


def retry_after_seconds(predicted: datetime | None, now: datetime) -> int:
    """Seconds from ``now`` until ``predicted``, clamped to [MIN_RETRY_AFTER, MAX_RETRY_AFTER]."""
    if predicted is None:
        return UNPREDICTED_RETRY_AFTER
    seconds = math.ceil((predicted - now).total_seconds())
    return min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, seconds))


def retry_after(pending: Sequence[GateSite], now: datetime) -> int:
    """Seconds a poller should wait before asking again, for a pending answer with these sites."""
    return _retry_after(pending, now)[0]


def passed_moments(pending: Sequence[GateSite], now: datetime) -> int:
    """How many of the pending sites' expected ready times are at or before ``now``: the only way the
    passing of time changes a verdict (a past estimate is dropped), so a view cached with the count
    it was built at stays right until the count moves."""
    return sum(1 for entry in pending if entry.expected_ready_at is not None and entry.expected_ready_at <= now)


def _retry_after(pending: Sequence[GateSite], now: datetime) -> tuple[int, datetime | None]:
    predictions = [p for p in (entry.predicted_at(now) for entry in pending) if p is not None]
    earliest = min(predictions, default=None)
    return retry_after_seconds(earliest, now), earliest


def _select(rows: Sequence[SiteSync], catalog: Mapping[str, Site], selection: GateSelection) -> list[GateSite]:
    by_site = {row.site: row for row in rows}
    if selection.sites is not None:
        unknown = [name for name in selection.sites if name not in catalog and name not in by_site]
        if unknown:
            shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise InvalidInput("UNKNOWN_SITE", f"no such site: {shown}")
        picked: list[GateSite] = []
        for name in selection.sites:
            row = by_site.get(name)
            if row is None or row.state is SyncState.SKIPPED:
                critical = catalog[name].critical if name in catalog else False
                picked.append(GateSite(name, row.state if row else None, SITE_OUT_OF_SCOPE, critical))
            else:
                picked.append(_entry(row, catalog))
        return picked
    in_scope = [row for row in rows if row.state is not SyncState.SKIPPED]
    if selection.ring is not None:
        if not any(site.ring == selection.ring for site in catalog.values()):
            raise InvalidInput("UNKNOWN_RING", "no site belongs to that ring")
        in_scope = [row for row in in_scope if row.site in catalog and catalog[row.site].ring == selection.ring]
    return [_entry(row, catalog) for row in sorted(in_scope, key=lambda r: r.site)]


def _entry(row: SiteSync, catalog: Mapping[str, Site]) -> GateSite:
    site = catalog.get(row.site)
    return GateSite(
        site=row.site,
        state=row.state,
        reason=row.reason.value if row.reason else None,
        critical=site.critical if site is not None else False,
        expected_ready_at=row.expected_ready_at,
        next_check_at=row.next_check_at,
        running=row.running_pods > 0,
        offline_since=row.offline_since,
    )
