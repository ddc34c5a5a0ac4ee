"""What moving a release costs a site: link rates, and when its bytes arrive through the sync windows.

A connected registry moves a release blob by blob. A blob that does not finish before its window closes
is taken to start again in the next one (a conservative reading: nothing promises a partial blob
survives), so a blob larger than a whole window never arrives, and bytes that do not fit in what is left
of tonight's window move the estimate to the window in which they do. With continuous sync there is no
window to miss: the estimate is the transfer time from now.

The rate is the one the site declares (``link: {bandwidth: "2Mbit/s"}``) or, with enough history, the one
learned from its past arrivals; the answer says which it used. No I/O here.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.links import LinkRate, RateSource, Transfer
from shared.domain.windows import CONTINUOUS_SCHEDULE, Window, window_at_or_after
from shared.errors import InvalidInput

# Enough past arrivals to trust a learned rate over nothing, and how far a search looks ahead.
MIN_RATE_SAMPLES = 3
MAX_WINDOWS_AHEAD = 400
_PREFIXES = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
# A number, a prefix (any case), then bit or b (bits) or B (bytes), per second: 2Mbit/s, 512 kb/s, 10MB/s.
_BANDWIDTH = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(bit|b|B)(?:/s|ps)\s*$")
_MAX_BANDWIDTH = 400_000_000_000  # 400 Gbit/s: beyond any site link, so a typo is caught


class ArrivalReason(StrEnum):
    """Why an estimate is what it is."""

    FITS = "FITS"  # arrives in the first window that can carry it
    EXCEEDS_WINDOW = "EXCEEDS_WINDOW"  # does not fit in what is left of the next window: a later one
    NEVER_FITS = "NEVER_FITS"  # a blob is larger than a whole window at this rate
    RATE_UNKNOWN = "RATE_UNKNOWN"  # no declared link and not enough history: the window close alone
    NOTHING_TO_MOVE = "NOTHING_TO_MOVE"  # the site already holds every blob


@dataclass(frozen=True)
class Arrival:
    """When the bytes a site still needs are expected there, and why."""

    expected_at: datetime | None
    reason: ArrivalReason
    window: Window | None = None  # the window they arrive in (None with continuous sync or never)
    windows_missed: int = 0  # windows that open before that one and cannot carry it
    rate: LinkRate | None = None


def parse_bandwidth(text: str) -> float:
    """Bits per second from ``2Mbit/s``, ``512 kb/s`` (bits), ``10MB/s`` (bytes), ``1Gbps``.

    Raises:
        InvalidInput: ``INVALID_BANDWIDTH``.
    """
    found = _BANDWIDTH.match(text or "")
    if found is None:
        raise InvalidInput(
            "INVALID_BANDWIDTH",
            f"{(text or '')[:40]!r} is not a bandwidth: a number, then bit/s, kbit/s, Mbit/s or Gbit/s (B/s for bytes)",
        )
    number, prefix, unit = found.groups()
    value = float(number) * _PREFIXES[prefix.lower()] * (8 if unit == "B" else 1)
    if not 1 <= value <= _MAX_BANDWIDTH:
        raise InvalidInput("INVALID_BANDWIDTH", f"{text[:40]!r} is outside 1 bit/s to 400 Gbit/s")
    return value


def learned_rate(samples: Sequence[tuple[int, timedelta]]) -> LinkRate | None:
    """The median of bytes ÷ time over past arrivals (bytes needed, from window opening to arrival);
    ``None`` with fewer than :data:`MIN_RATE_SAMPLES` usable ones."""
    rates = [8 * size / span.total_seconds() for size, span in samples if size > 0 and span.total_seconds() > 0]
    if len(rates) < MIN_RATE_SAMPLES:
        return None
    return LinkRate(statistics.median(rates), RateSource.OBSERVED)


def choose_rate(declared_bps: float | None, observed: LinkRate | None) -> LinkRate | None:
    """What the site has shown beats what it says: a learned rate when there is one, else the declared."""
    if observed is not None:
        return observed
    return LinkRate(declared_bps, RateSource.DECLARED) if declared_bps else None


def predict_arrival(
    blobs: Sequence[int],
    rate: LinkRate | None,
    schedule: str | None,
    sync_window: timedelta | None,
    now: datetime,
) -> Arrival:
    """When ``blobs`` (compressed sizes the site still needs) arrive, from ``now``, through the windows."""
    needed = [size for size in blobs if size > 0]
    first = window_at_or_after(schedule, sync_window, now)
    if not needed:
        return Arrival(first.closes_at, ArrivalReason.NOTHING_TO_MOVE, first, rate=rate)
    if rate is None:
        return Arrival(first.closes_at, ArrivalReason.RATE_UNKNOWN, first)
    per_second = rate.bytes_per_second
    if schedule is None or schedule.strip() == CONTINUOUS_SCHEDULE:
        return Arrival(now + timedelta(seconds=sum(needed) / per_second), ArrivalReason.FITS, rate=rate)
    window, missed = first, 0
    pending = list(needed)
    for _ in range(MAX_WINDOWS_AHEAD):
        capacity = (window.closes_at - max(window.opens_at, now)).total_seconds() * per_second
        whole = (window.closes_at - window.opens_at).total_seconds() * per_second
        if max(pending) > whole:
            return Arrival(None, ArrivalReason.NEVER_FITS, rate=rate)
        moved = 0.0
        while pending and moved + pending[0] <= capacity:
            moved += pending.pop(0)
        if not pending:
            start = max(window.opens_at, now)
            arrived = start + timedelta(seconds=moved / per_second)
            reason = ArrivalReason.FITS if missed == 0 else ArrivalReason.EXCEEDS_WINDOW
            return Arrival(arrived, reason, window, missed, rate)
        missed += 1
        window = window_at_or_after(schedule, sync_window, window.closes_at)
    return Arrival(None, ArrivalReason.NEVER_FITS, rate=rate)


def arrival_since_push(
    transfer: Transfer, schedule: str | None, sync_window: timedelta | None, pushed_at: datetime, now: datetime
) -> Arrival:
    """When a row's bytes arrive, counted from the push, so the estimate stays put check after check;
    once that moment has passed without them, counted again from ``now``."""
    arrival = predict_arrival(transfer.blobs, transfer.rate, schedule, sync_window, pushed_at)
    if arrival.expected_at is not None and arrival.expected_at <= now:
        return predict_arrival(transfer.blobs, transfer.rate, schedule, sync_window, now)
    return arrival


def arrival_sample(
    bytes_needed: int,
    arrived_at: datetime,
    pushed_at: datetime,
    schedule: str | None,
    sync_window: timedelta | None,
) -> tuple[int, timedelta] | None:
    """One past arrival as a rate sample: the bytes it needed and the time from the opening of the window
    it arrived in (not before the push) to its arrival; with continuous sync, from the push. ``None``
    when it did not arrive inside a window (nothing then says when its transfer began)."""
    if bytes_needed <= 0:
        return None
    if schedule is None or schedule.strip() == CONTINUOUS_SCHEDULE:
        began = pushed_at
    else:
        window = window_at_or_after(schedule, sync_window, arrived_at)
        if not window.contains(arrived_at):
            return None
        began = max(window.opens_at, pushed_at)
    span = arrived_at - began
    return (bytes_needed, span) if span > timedelta(0) else None
