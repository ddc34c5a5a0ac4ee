"""The site ledger: what the report counts about one release at one site, kept up to date as rows change.

A report over a period must not read every row of every release in it. Each row's save therefore
also writes its :class:`LedgerEntry` into the ledger of its site and its release's push day (one
document per (day, site), an entry per release), and a report reads the ledgers of the days in its
period: the cost follows sites × days with pushes, not sites × releases. An entry is a pure
function of the row (:func:`ledger_entry`), so writing it again is harmless and a lost write heals
on the row's next save.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.domain.model import SiteSync
from shared.domain.states import READY_STATES, SyncState


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

    def as_dict(self) -> dict[str, object]:
        return {
            "pushed_at": self.pushed_at.isoformat(),
            "ready": self.ready,
            "lag": self.lag_seconds,
            "stale": self.stale_incidents,
            "missed": self.window_missed,
        }

    @classmethod
    def from_dict(cls, site: str, release_id: str, doc: dict[str, object]) -> LedgerEntry:
        lag = doc.get("lag")
        return cls(
            site=site,
            release_id=release_id,
            pushed_at=datetime.fromisoformat(str(doc["pushed_at"])),
            ready=bool(doc.get("ready")),
            lag_seconds=float(lag) if isinstance(lag, int | float) else None,
            stale_incidents=int(doc.get("stale", 0)),  # type: ignore[call-overload]
            window_missed=bool(doc.get("missed")),
        )


def ledger_entry(row: SiteSync) -> LedgerEntry | None:
    """The row's entry; ``None`` for a row out of scope (SKIPPED), which the report does not count."""
    if row.state is SyncState.SKIPPED:
        return None
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
    )


def ledger_day(pushed_at: datetime) -> str:
    """The ledger a release's entries go to: its push day (UTC), ``YYYY-MM-DD``."""
    return pushed_at.astimezone(UTC).strftime("%Y-%m-%d")
