"""The events one row change raises, as a subscriber sees them: a table of changes of a two-site release."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain.announcements import events_for_change, events_for_current_state, release_is_ready
from shared.domain.model import Release
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


def counted(release: Release, **counts: int) -> Release:
    return replace(release, counts={SyncState[name]: n for name, n in counts.items()})


@pytest.mark.parametrize(
    ("before", "after", "counts_after", "events"),
    [
        # the first of two sites arrives: the site is news, the release not yet
        (W, S, {"SYNCED": 1, "WAITING_FOR_WINDOW": 1}, [SITE_SYNCED]),
        # the second arrives: the release is ready now
        (W, V, {"SYNCED": 1, "VERIFIED": 1}, [SITE_SYNCED, READY]),
        # synced becomes verified: both were ready before, nothing new for subscribers
        (S, V, {"VERIFIED": 2}, []),
        # the last site arrives beside a skipped site: skipped sites do not count
        (P, S, {"SYNCED": 1, "SKIPPED": 1}, [SITE_SYNCED, READY]),
        # a site goes stale
        (W, STALE, {"STALE": 1, "SYNCED": 1}, [SITE_STALE]),
        # the first failure of the release is news for the release too
        (P, F, {"FAILED": 1, "SYNCED": 1}, [RELEASE_FAILED]),
        # a second failure is not
        (P, F, {"FAILED": 2}, []),
        # a stale site recovers and makes the release ready
        (STALE, S, {"SYNCED": 2}, [SITE_SYNCED, READY]),
        # a row that only moves between waiting states says nothing
        (P, W, {"WAITING_FOR_WINDOW": 2}, []),
    ],
)
def test_the_events_a_change_raises(
    before: SyncState, after: SyncState, counts_after: dict[str, int], events: list[OutboundEventType]
) -> None:
    release = counted(make_release(), **counts_after)
    row = make_row(release, "plant-01", state=before)
    moved = replace(row, state=after, stale_at=NOW if after is STALE else None)
    assert [event.type for event in events_for_change(row, moved, release, NOW)] == events


def test_event_ids_are_deterministic_so_a_reannouncement_is_dropped() -> None:
    release = counted(make_release(), SYNCED=1, VERIFIED=1)
    row = make_row(release, "plant-01", state=W)
    first = events_for_change(row, replace(row, state=V), release, NOW)
    again = events_for_change(row, replace(row, state=V), release, NOW + timedelta(minutes=5))
    assert [event.event_id for event in first] == [event.event_id for event in again]
    assert [event.event_id for event in first] == [
        f"{release.release_id}:plant-01:synced",
        f"{release.release_id}:ready",
    ]


def test_each_stale_episode_is_news_of_its_own() -> None:
    release = counted(make_release(), STALE=1)
    row = make_row(release, "plant-01", state=W)
    first = events_for_change(row, replace(row, state=STALE, stale_at=NOW), release, NOW)
    later = events_for_change(row, replace(row, state=STALE, stale_at=NOW + timedelta(days=1)), release, NOW)
    assert first[0].event_id != later[0].event_id


@pytest.mark.parametrize(
    ("counts", "ready"),
    [
        ({"SYNCED": 1, "VERIFIED": 1}, True),
        ({"SYNCED": 1, "SKIPPED": 3}, True),
        ({"SYNCED": 1, "STALE": 1}, False),
        ({"SKIPPED": 2}, False),  # nothing in scope is never ready
        ({}, False),
    ],
)
def test_a_release_is_ready_when_every_in_scope_site_holds_it(counts: dict[str, int], ready: bool) -> None:
    assert release_is_ready(counted(make_release(), **counts)) is ready


def test_the_current_state_is_reannounced_after_a_crash_between_save_and_publish() -> None:
    release = counted(make_release(), SYNCED=1, FAILED=1)
    row = make_row(release, "plant-01", state=S)
    assert [event.type for event in events_for_current_state(row, release, NOW)] == [SITE_SYNCED, RELEASE_FAILED]
