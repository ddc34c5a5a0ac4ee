"""The site check's small rules, one table each: the check margin, where a fresh row starts, the decision
for a site that vanished, and how a decision becomes a row change.

Timeline: the plant syncs daily at 02:00 UTC for three hours ("0 2 * * *", PT3H); a check margin of
five minutes puts the first look into each window at 02:05.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.decisions import (
    MAX_CHECK_MARGIN,
    CheckDecision,
    Observations,
    apply_decision,
    check_margin,
    decide_check,
    decide_vanished_site,
    first_check,
)
from shared.domain.observations import ConnectedRegistryState, ConnectionState
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.domain.windows import Window
from shared.errors import IllegalTransition
from tests.builders import make_release, make_row, make_site

DAILY = "0 2 * * *"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("length", "margin"),
    [
        (timedelta(hours=3), MAX_CHECK_MARGIN),  # long windows: five minutes is enough to pull the message
        (timedelta(hours=1), MAX_CHECK_MARGIN),
        (timedelta(minutes=20), timedelta(minutes=5)),  # a quarter equals the cap
        (timedelta(minutes=8), timedelta(minutes=2)),  # short (simulated) windows: a quarter of the window
        (timedelta(minutes=1), timedelta(seconds=15)),
    ],
)
def test_the_check_margin_is_a_quarter_of_the_window_at_most_five_minutes(length: timedelta, margin: timedelta) -> None:
    opens = at(25, 2)
    assert check_margin(Window(opens, opens + length)) == margin


@pytest.mark.parametrize(
    ("now", "state", "reason", "expected", "check_at"),
    [
        # pushed in the morning: wait for tonight's window, look at 02:05, expect it by 05:00
        (at(24, 8, 30), SyncState.WAITING_FOR_WINDOW, SyncReason.WINDOW_CLOSED, at(25, 5), at(25, 2, 5)),
        # pushed during the window: check at once, expect it by this window's close
        (at(25, 3), SyncState.PENDING, SyncReason.AWAITING_FIRST_CHECK, at(25, 5), None),
        # pushed the minute it opens: inside the window
        (at(25, 2), SyncState.PENDING, SyncReason.AWAITING_FIRST_CHECK, at(25, 5), None),
        # pushed as it closes: the next night's window
        (at(25, 5), SyncState.WAITING_FOR_WINDOW, SyncReason.WINDOW_CLOSED, at(26, 5), at(26, 2, 5)),
    ],
)
def test_a_fresh_row_starts_by_the_sites_window(
    now: datetime, state: SyncState, reason: SyncReason, expected: datetime, check_at: datetime | None
) -> None:
    site = make_site("plant-01", schedule=DAILY, sync_window=timedelta(hours=3))
    start = first_check(site, now)
    assert (start.state, start.reason, start.expected_ready_at, start.check_at) == (state, reason, expected, check_at)


def test_a_fresh_row_at_a_continuously_syncing_site_is_checked_at_once() -> None:
    start = first_check(make_site("store-01"), at(24, 8, 30))
    assert (start.state, start.check_at) == (SyncState.PENDING, None)


@pytest.mark.parametrize(
    ("registered", "source", "summary"),
    [
        (True, EvidenceSource.ARM_LAST_SYNC, "the site's connected registry no longer exists in Azure"),
        (False, EvidenceSource.OPERATOR, "the site is no longer registered with acrsync"),
    ],
)
def test_a_vanished_site_fails_for_good_and_says_which_side_lost_it(
    registered: bool, source: EvidenceSource, summary: str
) -> None:
    decision = decide_vanished_site(registered=registered)
    assert (decision.state, decision.reason, decision.source, decision.summary) == (
        SyncState.FAILED,
        SyncReason.SITE_NOT_FOUND,
        source,
        summary,
    )
    assert decision.next_check_at is None and decision.expected_ready_at is None


def _decision(state: SyncState, reason: SyncReason, **kw: object) -> CheckDecision:
    fields: dict[str, object] = {
        "source": EvidenceSource.ARM_LAST_SYNC,
        "summary": "decided",
        "expected_ready_at": at(25, 5),
        "next_check_at": at(25, 2, 5),
    }
    fields.update(kw)
    return CheckDecision(state, reason, **fields)  # type: ignore[arg-type]


def test_a_decision_that_keeps_the_state_updates_the_row_in_place_without_evidence() -> None:
    row = make_row(make_release(), "plant-01", state=SyncState.WAITING_FOR_WINDOW)
    change = apply_decision(row, _decision(SyncState.WAITING_FOR_WINDOW, SyncReason.WINDOW_CLOSED), at(24, 9))
    assert change.evidence == ()
    assert (change.row.state, change.row.reason, change.row.checks) == (
        SyncState.WAITING_FOR_WINDOW,
        SyncReason.WINDOW_CLOSED,
        row.checks + 1,
    )
    assert (change.row.next_check_at, change.row.expected_ready_at, change.row.updated_at) == (
        at(25, 2, 5),
        at(25, 5),
        at(24, 9),
    )


def test_a_decision_that_moves_the_state_is_a_transition_with_its_evidence() -> None:
    row = make_row(make_release(), "plant-01", state=SyncState.WAITING_FOR_WINDOW)
    decision = _decision(
        SyncState.SYNCED,
        SyncReason.SYNCED_AFTER_PUSH,
        next_check_at=None,
        arrived_at=at(25, 2, 30),
        details={"lastSyncTime": at(25, 2, 30).isoformat()},
    )
    change = apply_decision(row, decision, at(25, 2, 40))
    (record,) = change.evidence
    assert (change.row.state, change.row.synced_at, change.row.checks) == (
        SyncState.SYNCED,
        at(25, 2, 30),  # when it arrived, not when the check ran
        row.checks + 1,
    )
    assert (record.state_from, record.state_to, record.source, record.summary, record.observed_at) == (
        SyncState.WAITING_FOR_WINDOW,
        SyncState.SYNCED,
        EvidenceSource.ARM_LAST_SYNC,
        "decided",
        at(25, 2, 40),
    )
    assert record.details == {"lastSyncTime": at(25, 2, 30).isoformat()}


def test_a_verified_decision_stamps_the_check_time_not_an_arrival_time() -> None:
    row = make_row(make_release(), "plant-01", state=SyncState.PENDING)
    decision = _decision(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, arrived_at=at(25, 2, 30))
    moved = apply_decision(row, decision, at(25, 2, 40)).row
    assert (moved.verified_at, moved.synced_at) == (at(25, 2, 40), at(25, 2, 40))


def test_a_decision_the_state_machine_forbids_raises() -> None:
    row = replace(make_row(make_release(), "plant-01"), state=SyncState.VERIFIED)
    with pytest.raises(IllegalTransition):
        apply_decision(row, _decision(SyncState.PENDING, SyncReason.AWAITING_FIRST_CHECK), at(25, 3))


FAR_PAST, FAR_FUTURE = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize("last_sync", [FAR_PAST, FAR_FUTURE, at(23, 2)])
@pytest.mark.parametrize("activity", [FAR_PAST, FAR_FUTURE])
@pytest.mark.parametrize("ttl", [timedelta(days=3_650_000), timedelta(days=2)])
@pytest.mark.parametrize("window", [timedelta(days=3_000_000), timedelta(hours=3), None])
def test_times_arm_cannot_mean_are_unknown_and_never_break_a_check(
    last_sync: datetime, activity: datetime, ttl: timedelta, window: timedelta | None
) -> None:
    now = at(25, 3)
    release = make_release(pushed_at=at(24, 8))
    arm = ConnectedRegistryState(
        resource_id="/cr/plant-01",
        name="plant-01",
        connection_state=ConnectionState.ONLINE,
        observed_at=now,
        last_sync_time=last_sync,
        last_activity_time=activity,
        message_ttl=ttl,
        schedule=DAILY if window else None,
        sync_window=window,
    )
    site = make_site("plant-01", connected_registry="/cr/plant-01")
    decision = decide_check(make_row(release, "plant-01"), site, Observations(now=now, arm=arm))
    # No believable sync after the push: the row is not synced, and every time it names is near.
    assert decision.state is not SyncState.SYNCED
    for moment in (decision.next_check_at, decision.expected_ready_at):
        assert moment is None or now <= moment <= now + timedelta(days=8), moment
