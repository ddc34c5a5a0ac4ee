"""Changing one site-sync row safely: read, decide, write conditionally, retry when another writer won.

Release-level counters move in the same atomic write as the row, so they stay exact however many
workers update rows of one release at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from shared.domain.changes import RowChange
from shared.domain.model import Evidence, Release, SiteSync, Versioned
from shared.domain.states import SyncState
from shared.errors import ConcurrencyConflict
from shared.ports import StateStore

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 25


@dataclass(frozen=True)
class RowUpdate:
    """The outcome of :func:`update_row`: the row before and after (``after`` is ``before`` when
    unchanged), and the release header as written when the state (and so its counters) moved."""

    before: SiteSync
    after: SiteSync
    release: Release | None
    changed: bool

    @property
    def state_changed(self) -> bool:
        return self.before.state is not self.after.state


Decision = Callable[[SiteSync], "RowChange | None"]
# Called by update_row when a row's state changes, inside the attempt that writes it, with the row
# before, the decided change and the release header with its counters already moved. Returns the
# header and the evidence to write instead: both go into the same atomic save as the row, and a lost
# race runs it again on fresh reads (signed delivery receipts chain through the header this way).
StateChangeHook = Callable[[SiteSync, RowChange, Release], tuple[Release, Sequence[Evidence]]]


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
    changes, the release counters move in the same atomic write; only then is the header read, and
    ``on_state_change`` (when given) may extend the header and the evidence of that write.

    Raises:
        NotFound: no such row or release.
        ConcurrencyConflict: still losing the race after ``attempts`` tries (transient: retry later).
    """
    for attempt in range(attempts):
        row = current if attempt == 0 and current is not None else store.get_site_sync(release_id, site)
        change = decide(row.value)
        if change is None:
            return RowUpdate(row.value, row.value, None, changed=False)
        header, evidence = None, change.evidence
        if change.row.state is not row.value.state:
            read = store.get_release(release_id)
            moved = read.value.with_count_moved(row.value.state, change.row.state)
            if on_state_change is not None:
                moved, evidence = on_state_change(row.value, change, moved)
            header = Versioned(moved, read.etag)
        try:
            store.save_site_sync(change.row, etag=row.etag, evidence=evidence, release=header)
        except ConcurrencyConflict:
            # Another worker changed this row or a sibling's counters. Retry at once the first
            # time (the usual race is one sibling's write); back off with jitter after that.
            if attempt:
                time.sleep(random.uniform(0, min(0.02 * attempt, 0.25)))  # noqa: S311 - jitter, not security
            continue
        return RowUpdate(row.value, change.row, header.value if header else None, changed=True)
    raise ConcurrencyConflict(f"site-sync row {release_id}/{site} kept changing under {attempts} attempts")


def tally(rows: Sequence[SiteSync]) -> dict[SyncState, int]:
    return dict(Counter(row.state for row in rows))


def recount(store: StateStore, release_id: str, *, attempts: int = MAX_ATTEMPTS) -> Release:
    """Recompute the release counters from its rows (after rows were created outside a counted write)."""
    for _ in range(attempts):
        header = store.get_release(release_id)
        counts = tally([row.value for row in store.list_site_syncs(release_id)])
        if dict(header.value.counts) == counts:
            return header.value
        try:
            return store.replace_release(replace(header.value, counts=counts), etag=header.etag).value
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
