"""The events acrsync raises, as a subscriber sees them: what one row change says about its site
(a table of changes), and what a recount of a two-site release says about the release."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain.announcements import (
    announces,
    events_for_change,
    events_for_current_state,
    events_for_release,
    release_is_ready,
)
from shared.domain.observations import OutboundEventType
from shared.domain.states import SyncState
from tests.builders import T0, make_release, make_row

P, W, S, V, STALE, F, SK = (
    SyncState.PENDING,
    SyncState.WAITING_FOR_WINDOW,
    SyncState.SYNCED,
    SyncState.VERIFIED,
    SyncState.STALE,
    SyncState.FAILED,
    SyncState.SKIPPED,
)
SITE_SYNCED, SITE_STALE = OutboundEventType.SITE_SYNCED, OutboundEventType.SITE_STALE
READY, RELEASE_FAILED = OutboundEventType.RELEASE_READY, OutboundEventType.RELEASE_FAILED
NOW = T0 + timedelta(hours=1)


def counts(**by_name: int) -> dict[SyncState, int]:
    return {SyncState[name]: n for name, n in by_name.items()}


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (W, S, [SITE_SYNCED]),  # a site arrives
        (P, V, [SITE_SYNCED]),  # verified at once
        (S, V, []),  # synced becomes verified: it was ready before, nothing new for subscribers
        (W, STALE, [SITE_STALE]),  # a site goes stale
        (STALE, S, [SITE_SYNCED]),  # a stale site recovers
        (P, F, []),  # a failure is news for the release (the recount says so), not a site event
        (P, W, []),  # a row that only moves between waiting states says nothing
    ],
)
def test_the_site_events_a_change_raises(before: SyncState, after: SyncState, events: list[OutboundEventType]) -> None:
    release = make_release()
    row = make_row(release, "plant-01", state=before)
    moved = replace(row, state=after, stale_at=NOW if after is STALE else None)
    assert [event.type for event in events_for_change(row, moved, release, NOW)] == events
    assert announces(row, moved) is bool(events)  # the header is read only when there is news


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        # the first of two sites arrived: not ready yet
        (counts(WAITING_FOR_WINDOW=2), counts(SYNCED=1, WAITING_FOR_WINDOW=1), []),
        # the second arrived: the release is ready now
        (counts(SYNCED=1, WAITING_FOR_WINDOW=1), counts(SYNCED=1, VERIFIED=1), [READY]),
        # both arrived between two recounts: ready all the same
        (counts(PENDING=2), counts(SYNCED=2), [READY]),
        # synced became verified: it was ready before, nothing new
        (counts(SYNCED=2), counts(VERIFIED=2), []),
        # the last site arrived beside a skipped site: skipped sites do not count
        (counts(PENDING=1, SKIPPED=1), counts(SYNCED=1, SKIPPED=1), [READY]),
        # the first failure of the release
        (counts(PENDING=1, SYNCED=1), counts(FAILED=1, SYNCED=1), [RELEASE_FAILED]),
        # a second failure is not news
        (counts(FAILED=1, PENDING=1), counts(FAILED=2), []),
        # a stale site recovered and made the release ready
        (counts(STALE=1, SYNCED=1), counts(SYNCED=2), [READY]),
        # a recount that finds what the last one found says nothing (a redelivered summary)
        (counts(SYNCED=2), counts(SYNCED=2), []),
    ],
)
def test_the_release_events_a_recount_raises(
    before: dict[SyncState, int], after: dict[SyncState, int], events: list[OutboundEventType]
) -> None:
    assert [event.type for event in events_for_release(before, make_release(), after, NOW)] == events


def test_event_ids_are_deterministic_so_a_reannouncement_is_dropped() -> None:
    release = make_release()
    row = make_row(release, "plant-01", state=W)
    first = events_for_change(row, replace(row, state=V), release, NOW)
    again = events_for_change(row, replace(row, state=V), release, NOW + timedelta(minutes=5))
    assert (
        [event.event_id for event in first]
        == [event.event_id for event in again]
        == [f"{release.release_id}:plant-01:synced"]
    )
    ready = events_for_release(counts(PENDING=1), release, counts(SYNCED=1), NOW)
    ready_again = events_for_release({}, release, counts(VERIFIED=1), NOW + timedelta(minutes=5))
    assert (
        [event.event_id for event in ready]
        == [event.event_id for event in ready_again]
        == [f"{release.release_id}:ready"]
    )
    assert ready[0].data["counts"] == {"SYNCED": 1}


def test_each_stale_episode_is_news_of_its_own() -> None:
    release = make_release()
    row = make_row(release, "plant-01", state=W)
    first = events_for_change(row, replace(row, state=STALE, stale_at=NOW), release, NOW)
    later = events_for_change(row, replace(row, state=STALE, stale_at=NOW + timedelta(days=1)), release, NOW)
    assert first[0].event_id != later[0].event_id


@pytest.mark.parametrize(
    ("by_state", "ready"),
    [
        (counts(SYNCED=1, VERIFIED=1), True),
        (counts(SYNCED=1, SKIPPED=3), True),
        (counts(SYNCED=1, STALE=1), False),
        (counts(SKIPPED=2), False),  # nothing in scope is never ready
        ({}, False),
    ],
)
def test_a_release_is_ready_when_every_in_scope_site_holds_it(by_state: dict[SyncState, int], ready: bool) -> None:
    assert release_is_ready(by_state) is ready


def test_the_current_state_is_reannounced_after_a_crash_between_save_and_publish() -> None:
    release = make_release()
    row = make_row(release, "plant-01", state=S)
    assert [event.type for event in events_for_current_state(row, release, NOW)] == [SITE_SYNCED]
