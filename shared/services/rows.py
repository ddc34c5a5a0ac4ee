"""Changing one site-sync row safely: read, decide, write conditionally, retry when another writer won.

A row change writes the row and its evidence (and, on an arrival, its signed receipt) in one
conditional write of that row, and nothing else: no entity shared with the other sites of the
release, so those sites never contend. Release-level counts follow off this path
(:mod:`shared.services.summaries`).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared.domain.changes import RowChange
from shared.domain.model import Release, SiteSync, Versioned
from shared.domain.states import SyncState
from shared.errors import ConcurrencyConflict
from shared.ports import StateStore

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 25


@dataclass(frozen=True)
class RowUpdate:
    """The outcome of :func:`update_row`: the row before and after (``after`` is ``before`` when unchanged)."""

    before: SiteSync
    after: SiteSync
    changed: bool

    @property
    def state_changed(self) -> bool:
        return self.before.state is not self.after.state


Decision = Callable[[SiteSync], "RowChange | None"]
# Called by update_row when a row's state changes, inside the attempt that writes it, with the row
# before and the decided change. Returns the change to write instead (the row and its evidence go
# into the same conditional save), and a lost race runs it again on the fresh read: signed delivery
# receipts chain through the row's own head this way.
StateChangeHook = Callable[[SiteSync, RowChange], RowChange]


def update_row(
    store: StateStore,
    release_id: str,
    site: str,
    decide: Decision,
    *,
    current: Versioned[SiteSync] | None = None,
    attempts: int = MAX_ATTEMPTS,
    on_state_change: StateChangeHook | None = None,
) -> RowUpdate:
    """Apply ``decide`` to the row until the conditional write succeeds.

    ``decide`` sees the freshest row on every attempt (``current``, when the caller has just read
    it, saves the first read) and returns ``None`` to leave the row as it is. When the state
    changes, ``on_state_change`` (when given) may extend the change before it is written.

    Raises:
        NotFound: no such row.
        ConcurrencyConflict: still losing the race after ``attempts`` tries (transient: retry later).
    """
    for attempt in range(attempts):
        row = current if attempt == 0 and current is not None else store.get_site_sync(release_id, site)
        change = decide(row.value)
        if change is None:
            return RowUpdate(row.value, row.value, changed=False)
        if change.row.state is not row.value.state and on_state_change is not None:
            change = on_state_change(row.value, change)
        try:
            store.save_site_sync(change.row, etag=row.etag, evidence=change.evidence, previous=row.value)
        except ConcurrencyConflict:
            # Another writer (an edge event, an operator) changed this row. Retry at once the first
            # time; back off with jitter after that.
            if attempt:
                time.sleep(random.uniform(0, min(0.02 * attempt, 0.25)))  # noqa: S311 - jitter, not security
            continue
        return RowUpdate(row.value, change.row, changed=True)
    raise ConcurrencyConflict(f"site-sync row {release_id}/{site} kept changing under {attempts} attempts")


def release_loader(store: StateStore, release_id: str) -> Callable[[], Release]:
    """The release header, read at most once and only when asked (a receipt or an announcement
    names the release's registry and tags; most row changes need neither)."""
    return functools.cache(lambda: store.get_release(release_id).value)


def tally(rows: Sequence[SiteSync]) -> dict[SyncState, int]:
    return dict(Counter(row.state for row in rows))


def earliest_due(rows: Sequence[SiteSync]) -> datetime | None:
    """The earliest :attr:`SiteSync.due_at` among ``rows`` (``None`` when none is ever due)."""
    return min((due for row in rows if (due := row.due_at) is not None), default=None)


def counted(release: Release, rows: Sequence[SiteSync], now: datetime) -> Release:
    """The header with what its rows add up to as of ``now``: counts per state and the earliest due time."""
    return replace(release, counts=tally(rows), counts_as_of=now, next_due_at=earliest_due(rows))


def recount(store: StateStore, release_id: str, now: datetime, *, attempts: int = MAX_ATTEMPTS) -> Release:
    """Recompute the release counts from its rows, as of ``now`` (fan-out, after creating rows)."""
    for _ in range(attempts):
        header = store.get_release(release_id)
        updated = counted(header.value, [row.value for row in store.list_site_syncs(release_id)], now)
        if (
            header.value.counts_as_of is not None
            and replace(updated, counts_as_of=header.value.counts_as_of) == header.value
        ):
            return header.value
        try:
            return store.replace_release(updated, etag=header.etag).value
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"release {release_id} counters kept changing under {attempts} attempts")


def modify_release(
    store: StateStore, release_id: str, change: Callable[[Release], Release], *, attempts: int = MAX_ATTEMPTS
) -> Versioned[Release]:
    """Apply ``change`` to the release header with ETag retries; a no-op change writes nothing."""
    for _ in range(attempts):
        header = store.get_release(release_id)
        updated = change(header.value)
        if updated == header.value:
            return header
        try:
            return store.replace_release(updated, etag=header.etag)
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"release {release_id} kept changing under {attempts} attempts")
