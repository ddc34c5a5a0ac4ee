"""Window arithmetic with transfer time: declared and learned link rates, and when a release's bytes
arrive through a site's sync windows (fits, spills into a later window, never fits, unknown rate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.links import LinkRate, RateSource
from shared.domain.transfers import (
    ArrivalReason,
    choose_rate,
    learned_rate,
    parse_bandwidth,
    predict_arrival,
)
from shared.errors import InvalidInput

MB = 1_000_000
NIGHTLY, TWO_HOURS = "0 22 * * *", timedelta(hours=2)  # the camp's window: 22:00-24:00 UTC
TWO_MBIT = LinkRate(2_000_000, RateSource.DECLARED)  # 250 kB/s: 1.8 GB per window


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("2Mbit/s", 2_000_000),
        ("512 kbit/s", 512_000),
        ("512 kb/s", 512_000),
        ("10MB/s", 80_000_000),
        ("1Gbps", 1_000_000_000),
        ("0.5 Mbit/s", 500_000),
        ("64bit/s", 64),
    ],
)
def test_bandwidths_read_bits_and_bytes(text: str, bits: float) -> None:
    assert parse_bandwidth(text) == bits


@pytest.mark.parametrize("text", ["fast", "", "2 Mbit", "-1Mbit/s", "0 bit/s", "500Gbit/s", "2 Tbit/s", "2Mbit/s/s"])
def test_a_bandwidth_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_bandwidth(text)
    assert refused.value.code == "INVALID_BANDWIDTH"


@pytest.mark.parametrize(
    ("blobs", "now", "expected_at", "reason", "missed"),
    [
        pytest.param([100 * MB], at(2, 15), at(2, 22, 6, 40), ArrivalReason.FITS, 0, id="fits-tonight"),
        pytest.param(
            [500 * MB] * 4,
            at(2, 15),
            at(3, 22, 33, 20),
            ArrivalReason.EXCEEDS_WINDOW,
            1,
            id="2GB-spills-into-tomorrow",  # tonight carries three blobs, tomorrow the fourth
        ),
        pytest.param([100 * MB], at(2, 23, 30), at(2, 23, 36, 40), ArrivalReason.FITS, 0, id="fits-what-is-left"),
        pytest.param(
            [600 * MB],
            at(2, 23, 30),
            at(3, 22, 40),
            ArrivalReason.EXCEEDS_WINDOW,
            1,
            id="does-not-fit-what-is-left",  # 30 minutes carry 450 MB
        ),
        pytest.param([2000 * MB], at(2, 15), None, ArrivalReason.NEVER_FITS, 0, id="one-blob-larger-than-a-window"),
        pytest.param([0, 0], at(2, 15), at(3, 0), ArrivalReason.NOTHING_TO_MOVE, 0, id="already-holds-every-blob"),
    ],
)
def test_arrival_through_the_windows(
    blobs: list[int], now: datetime, expected_at: datetime | None, reason: ArrivalReason, missed: int
) -> None:
    arrival = predict_arrival(blobs, TWO_MBIT, NIGHTLY, TWO_HOURS, now)
    assert (arrival.expected_at, arrival.reason, arrival.windows_missed) == (expected_at, reason, missed)
    if arrival.expected_at is not None and arrival.window is not None:
        assert arrival.window.opens_at <= arrival.expected_at <= arrival.window.closes_at


def test_without_a_rate_the_estimate_is_the_window_close_and_says_so() -> None:
    arrival = predict_arrival([2000 * MB], None, NIGHTLY, TWO_HOURS, at(2, 15))
    assert (arrival.expected_at, arrival.reason, arrival.rate) == (at(3, 0), ArrivalReason.RATE_UNKNOWN, None)


def test_continuous_sync_has_no_window_to_miss() -> None:
    arrival = predict_arrival([500 * MB] * 4, TWO_MBIT, None, None, at(2, 15))
    assert (arrival.expected_at, arrival.reason) == (at(2, 17, 13, 20), ArrivalReason.FITS)  # 8,000 s


def test_a_rate_is_learned_from_enough_past_arrivals_and_beats_the_declared_one() -> None:
    two = [(100 * MB, timedelta(seconds=400)), (50 * MB, timedelta(seconds=400))]
    assert learned_rate(two) is None  # not enough history
    three = [*two, (300 * MB, timedelta(seconds=1000)), (10 * MB, timedelta(0))]  # a zero span is not a sample
    observed = learned_rate(three)
    assert observed == LinkRate(2_000_000, RateSource.OBSERVED)  # median of 2, 1 and 2.4 Mbit/s
    assert choose_rate(8_000_000, observed) is observed
    assert choose_rate(8_000_000, None) == LinkRate(8_000_000, RateSource.DECLARED)
    assert choose_rate(None, None) is None
    slow = predict_arrival([500 * MB] * 4, LinkRate(1_000_000, RateSource.OBSERVED), NIGHTLY, TWO_HOURS, at(2, 15))
    # 900 MB per window carries one 500 MB blob, not two: the fourth arrives on the fourth night.
    assert (slow.reason, slow.windows_missed, slow.expected_at) == (ArrivalReason.EXCEEDS_WINDOW, 3, at(5, 23, 6, 40))
    assert slow.rate is not None and slow.rate.source is RateSource.OBSERVED
