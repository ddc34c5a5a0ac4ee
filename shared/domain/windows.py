"""Sync-window arithmetic: when a connected registry syncs next, and what that predicts.

A connected registry syncs on a 5-field cron ``schedule`` (UTC); each occurrence opens a window that
stays open for ``sync_window``. No schedule means continuous sync: the ARM default ``* * * * *``,
where windows tile time minute by minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import isodate
from cronsim import CronSim, CronSimError

from shared.domain.model import MAX_MESSAGE_TTL, MAX_SYNC_WINDOW, MIN_MESSAGE_TTL, MIN_SYNC_WINDOW
from shared.errors import InvalidInput

CONTINUOUS_SCHEDULE = "* * * * *"
_CONTINUOUS_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Window:
    """One sync window: the site may receive content from ``opens_at`` until ``closes_at``."""

    opens_at: datetime
    closes_at: datetime

    def contains(self, at: datetime) -> bool:
        return self.opens_at <= at < self.closes_at


def validate_schedule(schedule: str) -> str:
    """Return ``schedule`` if it is a valid 5-field cron expression, else raise ``InvalidInput(INVALID_SCHEDULE)``."""
    if not isinstance(schedule, str) or len(schedule.split()) != 5:
        raise InvalidInput("INVALID_SCHEDULE", f"{schedule!r} is not a 5-field cron expression")
    try:
        CronSim(schedule, datetime(2026, 1, 1))
    except CronSimError as exc:
        raise InvalidInput("INVALID_SCHEDULE", f"{schedule!r} is not a valid cron expression: {exc}") from exc
    return schedule


def parse_duration(text: str, *, setting: str) -> timedelta:
    """Parse an ISO 8601 duration of days, hours, minutes and seconds (no calendar months or years).

    Raises:
        InvalidInput: ``INVALID_DURATION`` naming ``setting``.
    """
    try:
        value = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput("INVALID_DURATION", f"{setting}: {text!r} is not an ISO 8601 duration") from exc
    if not isinstance(value, timedelta):
        raise InvalidInput("INVALID_DURATION", f"{setting}: {text!r} uses months or years; use days (P30D)")
    if value <= timedelta(0):
        raise InvalidInput("INVALID_DURATION", f"{setting}: {text!r} must be positive")
    return value


def format_duration(value: timedelta) -> str:
    """ISO 8601 text for a duration, e.g. ``PT3H`` or ``P2D``."""
    return str(isodate.duration_isoformat(value))


def check_limits(*, sync_window: timedelta | None, message_ttl: timedelta, allow_short_windows: bool = False) -> None:
    """Enforce the connected-registry limits: window 1 h – 7 d, message TTL 1 d – 90 d.

    ``allow_short_windows`` lifts the lower bounds for simulated sites only (demos finish in minutes).

    Raises:
        InvalidInput: ``WINDOW_OUT_OF_RANGE`` or ``TTL_OUT_OF_RANGE``.
    """
    if sync_window is not None:
        too_short = sync_window < MIN_SYNC_WINDOW and not allow_short_windows
        if too_short or sync_window > MAX_SYNC_WINDOW:
            raise InvalidInput(
                "WINDOW_OUT_OF_RANGE",
                f"sync_window {format_duration(sync_window)} is outside the connected-registry limits (PT1H to P7D)",
            )
    ttl_too_short = message_ttl < MIN_MESSAGE_TTL and not allow_short_windows
    if ttl_too_short or message_ttl > MAX_MESSAGE_TTL:
        raise InvalidInput(
            "TTL_OUT_OF_RANGE",
            f"message_ttl {format_duration(message_ttl)} is outside the connected-registry limits (P1D to P90D)",
        )


def _effective(schedule: str | None, sync_window: timedelta | None) -> tuple[str, timedelta]:
    if schedule is None or schedule.strip() == CONTINUOUS_SCHEDULE:
        return CONTINUOUS_SCHEDULE, _CONTINUOUS_WINDOW
    return schedule, sync_window or MIN_SYNC_WINDOW


def window_at_or_after(schedule: str | None, sync_window: timedelta | None, at: datetime) -> Window:
    """The window open at ``at``, or else the next one to open after ``at``."""
    expression, length = _effective(schedule, sync_window)
    # Occurrences are whole minutes; searching back from the next minute finds one at ``at``'s minute too.
    minute_after = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    previous = next(CronSim(expression, minute_after, reverse=True))
    if previous + length > at:
        return Window(previous, previous + length)
    opening = next(CronSim(expression, at))
    return Window(opening, opening + length)


def windows_between(
    schedule: str | None, sync_window: timedelta | None, start: datetime, end: datetime
) -> Iterator[Window]:
    """Every window that opens in ``[start, end)``, in order."""
    expression, length = _effective(schedule, sync_window)
    for opening in CronSim(expression, start - timedelta(seconds=1)):
        if opening >= end:
            return
        if opening >= start:
            yield Window(opening, opening + length)


def predicted_ready_at(
    schedule: str | None, sync_window: timedelta | None, pushed_at: datetime, now: datetime
) -> datetime:
    """When a digest pushed at ``pushed_at`` is expected at the site: the close of the first window
    that is still open or opens after both the push and ``now``."""
    window = window_at_or_after(schedule, sync_window, max(pushed_at, now))
    return window.closes_at
