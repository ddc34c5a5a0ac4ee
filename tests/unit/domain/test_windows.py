from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.windows import (
    check_limits,
    format_duration,
    parse_duration,
    predicted_ready_at,
    validate_schedule,
    window_at_or_after,
    windows_between,
)
from shared.errors import InvalidInput


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_window_open_now_is_returned() -> None:
    window = window_at_or_after("0 22 * * *", timedelta(hours=6), at(25, 1))
    assert (window.opens_at, window.closes_at) == (at(24, 22), at(25, 4))
    assert window.contains(at(25, 1))


def test_next_window_after_the_current_closed() -> None:
    window = window_at_or_after("0 22 * * *", timedelta(hours=6), at(25, 5))
    assert (window.opens_at, window.closes_at) == (at(25, 22), at(26, 4))


def test_window_opening_exactly_now() -> None:
    assert window_at_or_after("0 22 * * *", timedelta(hours=6), at(25, 22)).opens_at == at(25, 22)


def test_continuous_sync_is_a_window_every_minute() -> None:
    window = window_at_or_after(None, None, at(25, 10, 30) + timedelta(seconds=20))
    assert window.opens_at == at(25, 10, 30) and window.closes_at == at(25, 10, 31)
    assert window_at_or_after("* * * * *", timedelta(hours=5), at(25, 10)).closes_at == at(25, 10, 1)


def test_windows_between_counts_missed_windows() -> None:
    windows = list(windows_between("0 */6 * * *", timedelta(hours=1), at(25, 0), at(26, 0)))
    assert [w.opens_at.hour for w in windows] == [0, 6, 12, 18]


def test_predicted_ready_time_is_the_close_of_the_next_usable_window() -> None:
    assert predicted_ready_at("0 2 * * *", timedelta(hours=3), at(24, 9), at(24, 9)) == at(25, 5)
    # pushed while the window is open: this window may still carry it
    assert predicted_ready_at("0 2 * * *", timedelta(hours=3), at(25, 3), at(25, 3)) == at(25, 5)


@pytest.mark.parametrize("schedule", ["0 2 * *", "61 * * * *", "every day", "0 0 2 * * *", ""])
def test_bad_cron_is_refused(schedule: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_schedule(schedule)
    assert info.value.code == "INVALID_SCHEDULE"


def test_durations() -> None:
    assert parse_duration("PT3H", setting="sync_window") == timedelta(hours=3)
    assert parse_duration("P2D", setting="message_ttl") == timedelta(days=2)
    assert format_duration(timedelta(hours=6)) == "PT6H"
    for bad in ("P1M", "3h", "PT0S", "-PT1H", ""):
        with pytest.raises(InvalidInput, match="sync_window"):
            parse_duration(bad, setting="sync_window")


def test_connected_registry_limits() -> None:
    check_limits(sync_window=timedelta(hours=1), message_ttl=timedelta(days=1))
    check_limits(sync_window=timedelta(days=7), message_ttl=timedelta(days=90))
    with pytest.raises(InvalidInput, match="PT1H to P7D"):
        check_limits(sync_window=timedelta(minutes=30), message_ttl=timedelta(days=2))
    with pytest.raises(InvalidInput, match="P1D to P90D"):
        check_limits(sync_window=timedelta(hours=3), message_ttl=timedelta(days=91))
    check_limits(sync_window=timedelta(minutes=2), message_ttl=timedelta(minutes=30), allow_short_windows=True)
    with pytest.raises(InvalidInput):
        check_limits(sync_window=timedelta(days=8), message_ttl=timedelta(days=2), allow_short_windows=True)
