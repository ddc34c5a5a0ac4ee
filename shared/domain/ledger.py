"""The site ledger: the report's figures per site and push day, kept up to date as rows change.

A report over a period must not read every row of every release in it. So each site has, per push
day (UTC), one ledger document: the figures of the releases pushed that day that fanned out to it
(:class:`LedgerFigures`: received, ready, a lag histogram, windows missed, stale incidents) and
each release's contribution to them (:class:`LedgerEntry`, a pure function of the row,
:func:`ledger_entry`). Recording an entry replaces that release's contribution
(:meth:`LedgerDay.record`), so writing the same entry twice changes nothing and a lost write heals
on the row's next save. A report sums the figures of the days in its period and reads entries only
for the day the period starts in, so it costs sites × days with pushes, not sites × releases.

Lags are kept in a histogram of buckets 5 % wide (bucket ``i`` holds ``[1.05^(i-1), 1.05^i)``
seconds, bucket 0 everything under a second), so percentiles are estimates within 2.5 % of the
exact value (:meth:`LedgerFigures.lag_percentile`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.model import SiteSync
from shared.domain.states import READY_STATES, SyncState

LAG_GROWTH = 1.05
_LOG_GROWTH = math.log(LAG_GROWTH)


def lag_bucket(seconds: float) -> int:
    """The histogram bucket of a lag."""
    if seconds < 1:
        return 0
    return math.floor(math.log(seconds) / _LOG_GROWTH + 1e-9) + 1


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """``[low, high)`` seconds of a bucket."""
    if bucket == 0:
        return 0.0, 1.0
    return LAG_GROWTH ** (bucket - 1), LAG_GROWTH**bucket


@dataclass(frozen=True)
class LedgerEntry:
    """One release at one site, as the report counts it."""

    site: str
    release_id: str
    pushed_at: datetime
    ready: bool
    lag_seconds: float | None  # push to first arrival (SYNCED or VERIFIED), never below zero
    stale_incidents: int
    window_missed: bool
    bytes_delivered: int = 0  # what the site needed of the release, once it arrived (0 while unknown)

    def as_list(self) -> list[Any]:
        return [
            self.pushed_at.isoformat(),
            int(self.ready),
            self.lag_seconds,
            self.stale_incidents,
            int(self.window_missed),
            self.bytes_delivered,
        ]

    @classmethod
    def from_list(cls, site: str, release_id: str, item: list[Any]) -> LedgerEntry:
        pushed, ready, lag, stale, missed = item[:5]
        delivered = int(item[5]) if len(item) > 5 else 0  # entries written before bytes were counted
        return cls(
            site=site,
            release_id=release_id,
            pushed_at=datetime.fromisoformat(pushed),
            ready=bool(ready),
            lag_seconds=None if lag is None else float(lag),
            stale_incidents=int(stale),
            window_missed=bool(missed),
            bytes_delivered=delivered,
        )


@dataclass
class LedgerFigures:
    """What a report says about a site, summed over releases."""

    received: int = 0
    ready: int = 0
    lags: dict[int, int] = field(default_factory=dict)
    windows_missed: int = 0
    stale_incidents: int = 0
    bytes_delivered: int = 0

    def add(self, entry: LedgerEntry, times: int = 1) -> None:
        """Count ``entry`` in (``times=-1``: take it out again)."""
        self.received += times
        self.bytes_delivered += times * entry.bytes_delivered
        self.ready += times * entry.ready
        self.windows_missed += times * entry.window_missed
        self.stale_incidents += times * entry.stale_incidents
        if entry.lag_seconds is not None:
            bucket = lag_bucket(entry.lag_seconds)
            count = self.lags.get(bucket, 0) + times
            if count:
                self.lags[bucket] = count
            else:
                self.lags.pop(bucket, None)

    def merge(self, other: LedgerFigures) -> None:
        self.received += other.received
        self.ready += other.ready
        self.windows_missed += other.windows_missed
        self.stale_incidents += other.stale_incidents
        self.bytes_delivered += other.bytes_delivered
        for bucket, count in other.lags.items():
            self.lags[bucket] = self.lags.get(bucket, 0) + count

    def lag_percentile(self, fraction: float) -> float | None:
        """The ``fraction`` quantile (0-1) of the lags, estimated from the histogram: ranks as in
        linear interpolation between closest ranks (numpy's default), each ranked value placed
        evenly inside its bucket; to the millisecond. ``None`` without lags."""
        total = sum(self.lags.values())
        if not total:
            return None
        rank = round(fraction * (total - 1), 9)
        low, high = math.floor(rank), math.ceil(rank)
        at_low, at_high = self._value_at(low), self._value_at(high)
        return round(at_low + (at_high - at_low) * (rank - low), 3)

    def _value_at(self, index: int) -> float:
        seen = 0
        for bucket in sorted(self.lags):
            count = self.lags[bucket]
            if index < seen + count:
                low, high = bucket_bounds(bucket)
                return low + (high - low) * (index - seen + 0.5) / count
            seen += count
        raise IndexError(index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "ready": self.ready,
            "lags": {str(bucket): count for bucket, count in sorted(self.lags.items())},
            "missed": self.windows_missed,
            "stale": self.stale_incidents,
            "bytes": self.bytes_delivered,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LedgerFigures:
        return cls(
            received=int(doc.get("received", 0)),
            ready=int(doc.get("ready", 0)),
            lags={int(bucket): int(count) for bucket, count in (doc.get("lags") or {}).items()},
            windows_missed=int(doc.get("missed", 0)),
            stale_incidents=int(doc.get("stale", 0)),
            bytes_delivered=int(doc.get("bytes", 0)),
        )


@dataclass(frozen=True)
class LedgerDay:
    """One site's ledger for one push day: the figures and each release's contribution to them."""

    day: str
    site: str
    figures: LedgerFigures = field(default_factory=LedgerFigures)
    entries: Mapping[str, LedgerEntry] = field(default_factory=dict)

    def record(self, entry: LedgerEntry, *, only_if_absent: bool = False) -> LedgerDay:
        """This day with ``entry`` as its release's contribution (replacing the one before, or, with
        ``only_if_absent``, keeping it: a row saved since wrote a newer one)."""
        previous = self.entries.get(entry.release_id)
        if previous is not None and only_if_absent:
            return self
        figures = LedgerFigures.from_dict(self.figures.as_dict())
        if previous is not None:
            figures.add(previous, -1)
        figures.add(entry)
        return replace(self, figures=figures, entries={**self.entries, entry.release_id: entry})


def ledger_entry(row: SiteSync) -> LedgerEntry | None:
    """The row's entry; ``None`` for a row out of scope (SKIPPED), which the report does not count."""
    if row.state is SyncState.SKIPPED:
        return None
    return _entry(row)


def ledger_change(row: SiteSync, previous: SiteSync | None) -> LedgerEntry | None:
    """The entry a store records when it saves ``row`` (read as ``previous``): ``None`` when the row
    is not kept in the ledger, or its entry is what it was."""
    if not row.in_ledger:
        return None
    entry = ledger_entry(row)
    if entry is None or (previous is not None and ledger_entry(previous) == entry):
        return None
    return entry


def _entry(row: SiteSync) -> LedgerEntry:
    arrived = [at for at in (row.synced_at, row.verified_at) if at is not None]
    lag = max(0.0, (min(arrived) - row.pushed_at).total_seconds()) if arrived else None
    return LedgerEntry(
        site=row.site,
        release_id=row.release_id,
        pushed_at=row.pushed_at,
        ready=row.state in READY_STATES,
        lag_seconds=lag,
        stale_incidents=row.stale_incidents,
        window_missed=row.window_missed,
        bytes_delivered=row.transfer.bytes_needed if row.transfer and row.state in READY_STATES else 0,
    )


def ledger_day(pushed_at: datetime) -> str:
    """The ledger a release's entries go to: its push day (UTC), ``YYYY-MM-DD``."""
    return pushed_at.astimezone(UTC).strftime("%Y-%m-%d")


def ledger_days(pushed_from: datetime, pushed_until: datetime) -> list[str]:
    """Every push day from ``pushed_from`` to ``pushed_until``, oldest first."""
    first = pushed_from.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days, day = [], first
    while day <= pushed_until:
        days.append(ledger_day(day))
        day += timedelta(days=1)
    return days


def starts_mid_day(pushed_from: datetime) -> bool:
    """Whether a period starting at ``pushed_from`` covers its first push day only in part, so that
    day's figures must be summed from the entries pushed inside the period."""
    at = pushed_from.astimezone(UTC)
    return (at.hour, at.minute, at.second, at.microsecond) != (0, 0, 0, 0)


def figures_by_site(days: Iterable[LedgerDay], pushed_from: datetime) -> dict[str, LedgerFigures]:
    """Per site, the figures of the releases pushed since ``pushed_from`` (from the ledgers of the
    days of the period; the first day's entries must be loaded when the period starts mid-day)."""
    first = ledger_day(pushed_from)
    partial = starts_mid_day(pushed_from)
    found: dict[str, LedgerFigures] = {}
    for day in days:
        figures = found.setdefault(day.site, LedgerFigures())
        if day.day == first and partial:
            for entry in day.entries.values():
                if entry.pushed_at >= pushed_from:
                    figures.add(entry)
        else:
            figures.merge(day.figures)
    return found


def ledger_doc(day: LedgerDay) -> dict[str, Any]:
    """The stored form: ``{"figures": ..., "entries": {release_id: [...]}}``."""
    return {
        "figures": day.figures.as_dict(),
        "entries": {release_id: entry.as_list() for release_id, entry in sorted(day.entries.items())},
    }


def ledger_from_doc(day: str, site: str, doc: Mapping[str, Any], *, with_entries: bool = True) -> LedgerDay:
    entries: dict[str, LedgerEntry] = {}
    if with_entries:
        entries = {
            release_id: LedgerEntry.from_list(site, release_id, item)
            for release_id, item in (doc.get("entries") or {}).items()
        }
    return LedgerDay(day, site, LedgerFigures.from_dict(doc.get("figures") or {}), entries)
