"""A row that knows what its site still needs: the estimate, the reason and lateness follow the link.

The timeline is the site check's (``test_decisions``): pushed Tuesday 24 Nov 2026 08:30 UTC, the plant
syncs daily 02:00-05:00 UTC. Its declared link is 2 Mbit/s (250 kB/s), so a window carries 2.7 GB,
blob by blob. The 4 GB release below (1.5 + 1.5 + 1 GB) moves its first blob on 25 Nov and the other two
on 26 Nov, arriving 26 Nov 02:00 + 2.5 GB / 250 kB/s = 04:46:40.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.domain.announcements import wont_fit_event
from shared.domain.decisions import CONTINUOUS_STALE_CYCLE, with_transfer
from shared.domain.gate import GatePolicy, GateSelection, GateState, evaluate
from shared.domain.links import LinkRate, RateSource, Transfer
from shared.domain.model import Site, SiteSync
from shared.domain.observations import OutboundEventType
from shared.domain.states import SyncReason, SyncState
from shared.domain.transfers import arrival_sample
from tests.builders import make_release
from tests.unit.domain.test_decisions import (
    DAILY,
    PUSHED,
    STALE,
    THREE_HOURS,
    WAITING,
    arm_state,
    at,
    check,
    plant,
    release_row,
)

GB, MB = 1_000_000_000, 1_000_000
TWO_MBIT = LinkRate(2_000_000, RateSource.DECLARED)
FOUR_GB = Transfer((1_500 * MB, 1_500 * MB, 1_000 * MB), TWO_MBIT)
ARRIVES = datetime(2026, 11, 26, 4, 46, 40, tzinfo=UTC)


def planned(transfer: Transfer, *, site: Site | None = None) -> SiteSync:
    """The plant's waiting row once the release's first summary, a minute after the push, planned it."""
    return with_transfer(release_row(WAITING), site or plant(), transfer, at(24, 8, 31))


def test_bytes_that_do_not_fit_tonight_move_the_estimate_to_the_window_that_carries_them() -> None:
    row = planned(FOUR_GB)
    assert row.transfer == FOUR_GB and row.transfer.bytes_needed == 4 * GB
    assert row.reason is SyncReason.EXCEEDS_WINDOW
    assert row.expected_ready_at == ARRIVES  # without the link: 25 Nov 05:00, a window too early


def test_bytes_that_fit_arrive_when_they_are_moved_not_at_the_window_close() -> None:
    row = planned(Transfer((100 * MB,), TWO_MBIT))
    assert row.reason is SyncReason.WINDOW_CLOSED
    assert row.expected_ready_at == at(25, 2, 6) + timedelta(seconds=40)


def test_without_a_rate_the_estimate_stays_the_window_close() -> None:
    row = planned(Transfer((4 * GB,), None))
    assert row.reason is SyncReason.WINDOW_CLOSED
    assert row.expected_ready_at == at(25, 5)


def test_a_blob_larger_than_any_window_has_no_estimate() -> None:
    row = planned(Transfer((3 * GB,), TWO_MBIT))
    assert row.reason is SyncReason.EXCEEDS_WINDOW
    assert row.expected_ready_at is None


def test_rows_already_on_their_way_elsewhere_keep_their_estimate() -> None:
    stale = release_row(STALE)
    assert with_transfer(stale, plant(), FOUR_GB, at(24, 9)) == replace(stale, transfer=FOUR_GB)


def test_checks_keep_the_estimate_and_the_reason_in_and_after_the_first_window() -> None:
    row = planned(FOUR_GB)
    site = plant()
    for now in (at(25, 2, 40), at(25, 5, 30), at(26, 2, 10)):
        decision = check(row, site, now, arm=arm_state(site, now))
        assert decision.reason is SyncReason.EXCEEDS_WINDOW, now
        assert decision.expected_ready_at == ARRIVES, now


def test_windows_the_transfer_was_predicted_to_need_are_not_late() -> None:
    site = plant(message_ttl=timedelta(days=7))
    row = planned(FOUR_GB, site=site)
    unplanned = release_row(WAITING)
    now = at(26, 5, 30)  # two windows closed since the push: stale for a release that needed one
    assert check(unplanned, site, now, arm=arm_state(site, now)).state is STALE
    waiting = check(row, site, now, arm=arm_state(site, now))
    assert waiting.state is WAITING and waiting.reason is SyncReason.EXCEEDS_WINDOW
    later = at(27, 5, 30)  # three closed: the one planned and the two allowed
    assert check(row, site, later, arm=arm_state(site, later)).state is STALE
    assert check(row, site, later, arm=arm_state(site, later)).reason is SyncReason.WINDOW_MISSED


def test_a_late_transfer_is_estimated_again_from_now_never_in_the_past() -> None:
    site = plant()
    row = planned(FOUR_GB)
    now = at(27, 3)  # past the estimate, inside a window: the whole 4 GB counted from now
    decision = check(row, site, now, arm=arm_state(site, now))
    assert decision.expected_ready_at is not None and decision.expected_ready_at > now


def test_continuous_sync_allows_the_transfer_time_before_a_site_is_late() -> None:
    site = plant(schedule=None, sync_window=None)
    row = with_transfer(release_row(SyncState.PENDING), site, FOUR_GB, PUSHED)
    transfer_time = timedelta(seconds=4 * GB / 250_000)  # 4 h 26 min 40 s
    assert row.expected_ready_at == PUSHED + transfer_time
    now = PUSHED + 3 * CONTINUOUS_STALE_CYCLE  # late for a release that moves in no time
    assert check(release_row(SyncState.PENDING), site, now, arm=arm_state(site, now)).state is STALE
    assert check(row, site, now, arm=arm_state(site, now)).state is SyncState.PENDING


def test_the_gate_names_the_sites_that_need_more_than_their_next_window_and_waits_for_them() -> None:
    release = make_release()
    now = at(24, 9)
    fits = replace(planned(Transfer((100 * MB,), TWO_MBIT)), release_id=release.release_id, site="plant-0002")
    big = replace(planned(FOUR_GB), release_id=release.release_id, next_check_at=at(25, 2, 5))
    verdict = evaluate(
        release,
        [big, fits],
        [Site(name=big.site), Site(name=fits.site)],
        selection=GateSelection(),
        policy=GatePolicy(),
        now=now,
    )
    assert verdict.state is GateState.PENDING
    assert verdict.expected_ready_at == ARRIVES
    assert verdict.expected_ready_reason == "EXCEEDS_WINDOW: plant-0001 need more than their next sync window"
    # The big site's check on 25 Nov will not find it there: Retry-After follows the other site.
    assert verdict.next_change_at == fits.expected_ready_at


def test_a_wont_fit_event_has_the_rows_id_and_what_it_needs() -> None:
    release = make_release()
    row = replace(planned(FOUR_GB), release_id=release.release_id)
    event = wont_fit_event(row, release, at(24, 8, 31))
    assert event.type is OutboundEventType.SITE_WONT_FIT
    assert event.event_id == f"{release.release_id}:plant-0001:wont_fit"
    assert event.data["bytes_needed"] == 4 * GB
    assert event.data["link_bits_per_second"] == 2_000_000 and event.data["rate_source"] == "declared"
    assert event.data["expected_ready_at"] == ARRIVES.isoformat()
    assert event.data["reason"] == "EXCEEDS_WINDOW"


def test_a_past_arrival_teaches_the_time_from_its_window_opening() -> None:
    assert arrival_sample(900 * MB, at(25, 3), PUSHED, DAILY, THREE_HOURS) == (900 * MB, timedelta(hours=1))
    # Pushed inside the window: the transfer began with the push.
    assert arrival_sample(900 * MB, at(25, 3), at(25, 2, 30), DAILY, THREE_HOURS) == (900 * MB, timedelta(minutes=30))
    assert arrival_sample(900 * MB, at(25, 6), PUSHED, DAILY, THREE_HOURS) is None  # outside any window
    assert arrival_sample(0, at(25, 3), PUSHED, DAILY, THREE_HOURS) is None  # nothing moved
    assert arrival_sample(900 * MB, PUSHED + timedelta(hours=2), PUSHED, None, None) == (900 * MB, timedelta(hours=2))
