"""The readiness gate's policy, table by table: selection, fractions, critical sites, failures, Retry-After."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.gate import (
    MAX_RETRY_AFTER,
    MIN_RETRY_AFTER,
    NOT_RUNNING,
    SITE_OUT_OF_SCOPE,
    UNPREDICTED_RETRY_AFTER,
    FailureCode,
    GatePolicy,
    GateSelection,
    GateState,
    GateVerdict,
    evaluate,
    parse_site_list,
    retry_after_seconds,
)
from shared.domain.model import Site, SiteSync
from shared.domain.states import SyncReason, SyncState
from shared.errors import InvalidInput
from tests.builders import make_release, make_row

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RELEASE = make_release()
V, S, P, W = SyncState.VERIFIED, SyncState.SYNCED, SyncState.PENDING, SyncState.WAITING_FOR_WINDOW
ST, F, WD, SK = SyncState.STALE, SyncState.FAILED, SyncState.WITHDRAWN, SyncState.SKIPPED


def row(site: str, state: SyncState, *, expected: timedelta | None = None, check: timedelta | None = None) -> SiteSync:
    return replace(
        make_row(RELEASE, site, state=state),
        expected_ready_at=NOW + expected if expected is not None else None,
        next_check_at=NOW + check if check is not None else None,
    )


def rows_of(*states: SyncState) -> list[SiteSync]:
    return [row(f"site-{i:02d}", state, expected=timedelta(hours=1)) for i, state in enumerate(states)]


def sites_for(
    rows: list[SiteSync], *, critical: tuple[str, ...] = (), rings: dict[str, str] | None = None
) -> list[Site]:
    rings = rings or {}
    return [Site(name=r.site, critical=r.site in critical, ring=rings.get(r.site, "default")) for r in rows]


def gate(
    rows: list[SiteSync],
    *,
    sites: list[Site] | None = None,
    selection: GateSelection | None = None,
    min_ready: float = 1.0,
    require_all_critical: bool = True,
    withdrawn: bool = False,
) -> GateVerdict:
    release = replace(RELEASE, withdrawn_at=NOW) if withdrawn else RELEASE
    return evaluate(
        release,
        rows,
        sites if sites is not None else sites_for(rows),
        selection=selection or GateSelection(),
        policy=GatePolicy(min_ready=min_ready, require_all_critical=require_all_critical),
        now=NOW,
    )


# -- ready / pending / failed by fraction ------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "min_ready", "state", "ready", "total"),
    [
        ((V, S, V), 1.0, GateState.READY, 3, 3),
        ((V, S, P), 1.0, GateState.PENDING, 2, 3),
        ((V, W), 1.0, GateState.PENDING, 1, 2),
        ((V,) * 19 + (P,), 0.95, GateState.READY, 19, 20),  # the boundary: 19/20 is exactly 0.95
        ((V,) * 19 + (F,), 0.95, GateState.READY, 19, 20),  # one blocked site is within the 5 % allowance
        ((V,) * 18 + (P, P), 0.95, GateState.PENDING, 18, 20),
        ((V,) * 18 + (P, F), 0.95, GateState.PENDING, 18, 20),  # 19 can still make it
        ((V,) * 18 + (F, ST), 0.95, GateState.FAILED, 18, 20),  # only 18 can: no longer possible
        ((V, P, P, P), 0.25, GateState.READY, 1, 4),
        ((P, P, P, P), 0.25, GateState.PENDING, 0, 4),
        ((V, F), 1.0, GateState.FAILED, 1, 2),
        ((V, ST), 1.0, GateState.FAILED, 1, 2),  # stale counts as blocked for the gate
        ((V, WD), 1.0, GateState.FAILED, 1, 2),
        ((V, V, F), 0.5, GateState.READY, 2, 3),
        ((V, SK, SK), 1.0, GateState.READY, 1, 1),  # out-of-scope rows are not selected
    ],
)
def test_fraction_policy(
    states: tuple[SyncState, ...], min_ready: float, state: GateState, ready: int, total: int
) -> None:
    verdict = gate(rows_of(*states), min_ready=min_ready)
    assert (verdict.state, verdict.ready, verdict.total) == (state, ready, total)


@pytest.mark.parametrize(("min_ready", "total", "required"), [(0.95, 20, 19), (1.0, 3, 3), (0.5, 3, 2), (0.01, 3, 1)])
def test_required_count_is_the_ceiling_without_float_error(min_ready: float, total: int, required: int) -> None:
    assert GatePolicy(min_ready=min_ready).required(total) == required


def test_too_many_blocked_names_the_blocked_sites() -> None:
    verdict = gate(rows_of(V, F, ST, P), min_ready=0.75)
    assert verdict.state is GateState.FAILED
    [reason] = verdict.reasons
    assert reason.code is FailureCode.TOO_MANY_BLOCKED and reason.sites == ("site-01", "site-02")
    assert [b.site for b in verdict.blocked] == ["site-01", "site-02"] and [p.site for p in verdict.pending] == [
        "site-03"
    ]


# -- critical sites ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "require_all_critical", "state", "codes"),
    [
        ((P, V, V, V), True, GateState.PENDING, []),  # fraction met, the critical site still pending
        ((P, V, V, V), False, GateState.READY, []),
        ((F, V, V, V), True, GateState.FAILED, [FailureCode.CRITICAL_SITE_BLOCKED]),
        ((F, V, V, V), False, GateState.READY, []),
        ((ST, V, V, V), True, GateState.FAILED, [FailureCode.CRITICAL_SITE_BLOCKED]),
        ((V, V, V, P), True, GateState.READY, []),  # a pending non-critical site is covered by 0.75
    ],
)
def test_critical_sites(
    states: tuple[SyncState, ...], require_all_critical: bool, state: GateState, codes: list[FailureCode]
) -> None:
    rows = rows_of(*states)
    verdict = gate(
        rows, sites=sites_for(rows, critical=("site-00",)), min_ready=0.75, require_all_critical=require_all_critical
    )
    assert verdict.state is state and [r.code for r in verdict.reasons] == codes
    if codes:
        assert verdict.reasons[0].sites == ("site-00",)


def test_a_site_deleted_from_the_catalog_still_counts_but_is_not_critical() -> None:
    rows = rows_of(V, F)
    verdict = gate(rows, sites=[Site(name="site-00", critical=True)], min_ready=0.5)
    assert verdict.state is GateState.READY and verdict.total == 2
    assert verdict.blocked[0].critical is False


# -- failure reasons ---------------------------------------------------------------------------


def test_a_withdrawn_release_fails_even_when_every_site_holds_it() -> None:
    verdict = gate(rows_of(V, V), withdrawn=True)
    assert verdict.state is GateState.FAILED
    assert [r.code for r in verdict.reasons] == [FailureCode.RELEASE_WITHDRAWN]


def test_an_empty_selection_fails() -> None:
    verdict = gate(rows_of(SK, SK))
    assert verdict.state is GateState.FAILED and verdict.total == 0
    assert [r.code for r in verdict.reasons] == [FailureCode.NO_SITES_SELECTED]


def test_every_reason_that_applies_is_reported() -> None:
    rows = rows_of(F, P)
    verdict = gate(rows, sites=sites_for(rows, critical=("site-00",)), withdrawn=True)
    assert [r.code for r in verdict.reasons] == [
        FailureCode.RELEASE_WITHDRAWN,
        FailureCode.CRITICAL_SITE_BLOCKED,
        FailureCode.TOO_MANY_BLOCKED,
    ]
    assert verdict.retry_after is None  # a failed gate has nothing to wait for


# -- selection ---------------------------------------------------------------------------------


def test_a_ring_selects_its_in_scope_sites_only() -> None:
    rows = rows_of(V, P, F, SK)
    rings = {"site-00": "canary", "site-01": "prod", "site-02": "prod", "site-03": "canary"}
    canary = gate(rows, sites=sites_for(rows, rings=rings), selection=GateSelection(ring="canary"))
    assert (canary.state, canary.total) == (GateState.READY, 1)
    prod = gate(rows, sites=sites_for(rows, rings=rings), selection=GateSelection(ring="prod"))
    assert (prod.state, prod.total, prod.ready) == (GateState.FAILED, 2, 0)


def test_a_ring_whose_sites_are_all_out_of_scope_selects_nothing() -> None:
    rows = rows_of(V, SK)
    verdict = gate(rows, sites=sites_for(rows, rings={"site-01": "edge"}), selection=GateSelection(ring="edge"))
    assert verdict.state is GateState.FAILED and verdict.reasons[0].code is FailureCode.NO_SITES_SELECTED


def test_an_unknown_ring_is_refused() -> None:
    with pytest.raises(InvalidInput) as raised:
        gate(rows_of(V), selection=GateSelection(ring="nowhere"))
    assert raised.value.code == "UNKNOWN_RING"


def test_explicit_picks_count_out_of_scope_sites_as_blocked() -> None:
    rows = rows_of(V, SK)
    catalog = [*sites_for(rows), Site(name="site-99")]  # site-99 is a site without a row
    verdict = gate(rows, sites=catalog, selection=GateSelection(sites=("site-00", "site-01", "site-99")))
    assert verdict.state is GateState.FAILED and verdict.total == 3 and verdict.ready == 1
    assert [(b.site, b.state, b.reason) for b in verdict.blocked] == [
        ("site-01", SyncState.SKIPPED, SITE_OUT_OF_SCOPE),
        ("site-99", None, SITE_OUT_OF_SCOPE),
    ]


def test_explicit_picks_of_ready_sites_are_ready_whatever_the_others_do() -> None:
    verdict = gate(rows_of(V, F, P), selection=GateSelection(sites=("site-00",)))
    assert (verdict.state, verdict.ready, verdict.total) == (GateState.READY, 1, 1)


def test_an_explicit_pick_of_a_deleted_site_with_a_row_is_known() -> None:
    rows = rows_of(V)
    assert gate(rows, sites=[], selection=GateSelection(sites=("site-00",))).state is GateState.READY


def test_an_unknown_site_is_refused() -> None:
    with pytest.raises(InvalidInput) as raised:
        gate(rows_of(V), selection=GateSelection(sites=("site-00", "ghost")))
    assert raised.value.code == "UNKNOWN_SITE" and "ghost" in raised.value.detail


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: GateSelection(sites=("a",), ring="r"), "CONFLICTING_SELECTION"),
        (lambda: GateSelection(sites=()), "INVALID_SITE_LIST"),
        (lambda: GateSelection(ring=""), "INVALID_RING"),
        (lambda: GatePolicy(min_ready=0), "INVALID_MIN_READY"),
        (lambda: GatePolicy(min_ready=1.01), "INVALID_MIN_READY"),
        (lambda: GatePolicy(min_ready=math.nan), "INVALID_MIN_READY"),
        (lambda: GatePolicy(min_ready=True), "INVALID_MIN_READY"),
        (lambda: parse_site_list(""), "INVALID_SITE_LIST"),
        (lambda: parse_site_list("a,,b"), "INVALID_SITE_LIST"),
        (lambda: parse_site_list("a,Bad_Name"), "INVALID_SITE_NAME"),
    ],
)
def test_bad_selections_and_policies_are_refused(make: object, code: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        make()  # type: ignore[operator]
    assert raised.value.code == code


def test_site_lists_are_trimmed_and_deduplicated_in_order() -> None:
    assert parse_site_list("b, a ,b") == ("b", "a")


# -- Retry-After -------------------------------------------------------------------------------

MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("pending", "seconds"),
    [
        ([row("a", P, expected=5 * MIN)], 300),
        ([row("a", W, expected=5 * MIN, check=2 * MIN)], 120),  # the next check comes sooner
        ([row("a", W, expected=5 * MIN, check=-2 * MIN)], 300),  # a past check is no prediction
        ([row("a", W, expected=None, check=3 * MIN)], 180),
        ([row("a", P, expected=9 * MIN), row("b", W, expected=4 * MIN)], 240),  # the earliest pending site
        ([row("a", P, expected=timedelta(seconds=10.2))], 11),  # whole seconds, rounded up
        ([row("a", P, expected=-5 * MIN)], MIN_RETRY_AFTER),  # overdue: look again soon
        ([row("a", P, expected=timedelta(seconds=3))], MIN_RETRY_AFTER),
        ([row("a", W, expected=timedelta(days=3))], MAX_RETRY_AFTER),
        ([row("a", P)], UNPREDICTED_RETRY_AFTER),
    ],
)
def test_retry_after_follows_the_earliest_prediction(pending: list[SiteSync], seconds: int) -> None:
    verdict = gate([row("z", V, expected=MIN), *pending])
    assert verdict.state is GateState.PENDING and verdict.retry_after == seconds


def test_retry_after_ignores_ready_and_blocked_sites() -> None:
    rows = [row("a", V, expected=MIN), row("b", F, expected=2 * MIN), row("c", P, expected=20 * MIN)]
    assert gate(rows, min_ready=0.5).retry_after == 1200


def test_retry_after_seconds_clamps() -> None:
    assert retry_after_seconds(NOW + timedelta(hours=5), NOW) == MAX_RETRY_AFTER
    assert retry_after_seconds(NOW, NOW) == MIN_RETRY_AFTER
    assert retry_after_seconds(None, NOW) == UNPREDICTED_RETRY_AFTER


def test_pending_and_blocked_entries_carry_what_a_release_manager_needs() -> None:
    rows = [row("a", W, expected=MIN), replace(row("b", F), reason=SyncReason.SYNC_TOKEN_EXPIRED)]
    verdict = gate(rows, sites=[Site(name="a", critical=True), Site(name="b")], min_ready=0.5)
    [pending] = verdict.pending
    assert (pending.site, pending.state, pending.critical, pending.expected_ready_at) == ("a", W, True, NOW + MIN)
    [blocked] = verdict.blocked
    assert (blocked.site, blocked.state, blocked.reason) == ("b", F, "SYNC_TOKEN_EXPIRED")


# -- require_running -------------------------------------------------------------------------------


def test_with_require_running_a_site_is_ready_once_it_runs_the_digest_not_when_it_holds_it() -> None:
    rows = [
        replace(row("site-00", V), running_pods=3),
        row("site-01", S),
        row("site-02", P, expected=timedelta(hours=1)),
    ]
    sites = sites_for(rows)
    holding = evaluate(RELEASE, rows, sites, selection=GateSelection(), policy=GatePolicy(min_ready=0.6), now=NOW)
    assert (holding.state, holding.ready, holding.running) == (GateState.READY, 2, 1)  # off by default
    policy = GatePolicy(min_ready=0.6, require_running=True)
    running = evaluate(RELEASE, rows, sites, selection=GateSelection(), policy=policy, now=NOW)
    assert (running.state, running.ready, running.running) == (GateState.PENDING, 1, 1)
    waiting = {entry.site: entry.reason for entry in running.pending}
    assert waiting == {"site-01": NOT_RUNNING, "site-02": "AWAITING_FIRST_CHECK"}
    rows[1] = replace(rows[1], running_pods=1)
    now_running = evaluate(RELEASE, rows, sites, selection=GateSelection(), policy=policy, now=NOW)
    assert (now_running.state, now_running.ready) == (GateState.READY, 2)


# -- the overall estimate and stale sites -------------------------------------------------------------


def test_the_estimate_is_when_enough_pending_sites_are_expected_ready() -> None:
    rows = [
        row("a", V),
        row("b", P, expected=30 * MIN),
        row("c", W, expected=10 * MIN),
        row("d", P, expected=20 * MIN),
    ]
    verdict = gate(rows, min_ready=0.75)  # 3 of 4: a is ready, two more needed
    assert verdict.state is GateState.PENDING
    assert verdict.expected_ready_at == NOW + 20 * MIN and verdict.expected_ready_reason is None


def test_a_critical_site_sets_the_estimate_when_it_comes_last() -> None:
    rows = [row("a", P, expected=10 * MIN), row("b", P, expected=90 * MIN)]
    verdict = gate(rows, sites=sites_for(rows, critical=("b",)), min_ready=0.5)
    assert verdict.expected_ready_at == NOW + 90 * MIN


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([row("a", P)], "no expected ready time for a (PENDING AWAITING_FIRST_CHECK)"),
        ([row("a", W, expected=-5 * MIN)], "no expected ready time for a (WAITING_FOR_WINDOW AWAITING_FIRST_CHECK)"),
    ],
)
def test_no_estimate_rather_than_a_past_or_made_up_one(rows: list[SiteSync], reason: str) -> None:
    verdict = gate(rows)
    assert verdict.expected_ready_at is None and verdict.expected_ready_reason == reason


def test_stale_sites_can_count_as_pending_and_then_give_no_estimate() -> None:
    rows = [row("a", V), replace(row("b", ST, expected=10 * MIN), reason=SyncReason.SITE_OFFLINE)]
    assert gate(rows).state is GateState.FAILED  # stale blocks by default
    verdict = evaluate(
        RELEASE, rows, sites_for(rows), selection=GateSelection(), policy=GatePolicy(stale_blocks=False), now=NOW
    )
    assert verdict.state is GateState.PENDING and [e.site for e in verdict.pending] == ["b"]
    assert (
        verdict.expected_ready_at is None
        and verdict.expected_ready_reason == "no expected ready time for b (STALE SITE_OFFLINE)"
    )
