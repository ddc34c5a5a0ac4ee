"""What each site still needs of a weighed release, at what rate, and whether it fits the next window.

Runs in the release's summary once its weight is known (seconds after the push), so a site whose bytes
do not fit tonight's window is known, and announced (``acrsync.site.wont_fit``), at push time rather
than when it goes stale. A site holds the blobs of the releases of the same repository it has received
(by their rows): a connected registry syncs per repository, so blobs of other repositories are not
taken as held. The same rows, with what they needed and when they arrived, teach each site's rate.

Idempotent: rows that already have a transfer are left alone, so a redelivered summary (or one that
lost its header race) plans only what is left, and the event's id is the row's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.announcements import wont_fit_event
from shared.domain.changes import RowChange
from shared.domain.decisions import with_transfer
from shared.domain.links import Transfer
from shared.domain.model import Release, Site, SiteSync, Versioned
from shared.domain.states import READY_STATES, SyncReason, SyncState
from shared.domain.transfers import arrival_sample, choose_rate, learned_rate
from shared.errors import NotFound
from shared.ports import RowWrite
from shared.services.announce import publish
from shared.services.dependencies import Dependencies
from shared.services.rows import Decision, update_row

logger = logging.getLogger(__name__)

# Earlier releases of the repository read for what sites hold and how fast they received it.
HISTORY_RELEASES = 10
_NOT_PLANNED = frozenset({SyncState.SKIPPED, SyncState.FAILED, SyncState.WITHDRAWN})


@dataclass
class _SiteHistory:
    held: set[str] = field(default_factory=set)
    samples: list[tuple[int, timedelta]] = field(default_factory=list)


def plan_transfers(services: Dependencies, release: Release, rows: Sequence[Versioned[SiteSync]], now: datetime) -> int:
    """Give every row of ``release`` without one its transfer; returns how many rows were planned.

    Raises:
        TransientError: the store or the event sink is unavailable; the next summary plans the rest.
    """
    content = release.content
    todo = [row for row in rows if row.value.transfer is None and row.value.state not in _NOT_PLANNED]
    if content is None or not todo:
        return 0
    sites = {site.name: site for site in services.catalog.sites()}
    history = _history(services, release, sites)
    transfers: dict[str, tuple[Site, Transfer]] = {}
    writes: list[RowWrite] = []
    for versioned in todo:
        site = sites.get(versioned.value.site)
        if site is None:
            continue  # a site being removed: its check fails the row
        known = history.get(site.name, _SiteHistory())
        rate = choose_rate(site.bandwidth_bps, learned_rate(known.samples))
        transfer = Transfer(tuple(blob.size for blob in content.blobs if blob.digest not in known.held), rate)
        transfers[site.name] = (site, transfer)
        writes.append(RowWrite(with_transfer(versioned.value, site, transfer, now), versioned.etag, versioned.value))
    # One transaction per ROWS_PER_TRANSACTION rows; a chunk that lost a race with a check is planned row by row.
    batch = services.store.save_site_sync_batch(writes)
    saved = set(batch.saved)
    planned = {write.row.site: write.row for write in writes if write.row.site in saved}
    for name in batch.refused:
        site, transfer = transfers[name]
        try:
            update = update_row(services.store, release.release_id, name, _planner(site, transfer, now))
        except NotFound:
            continue
        if update.changed:
            planned[name] = update.after
    events = [wont_fit_event(row, release, now) for row in planned.values() if row.reason is SyncReason.EXCEEDS_WINDOW]
    publish(services.events, events)
    logger.info(
        "planned the transfers of release %s to %s sites (%s row by row); %s do not fit their next window",
        release.release_id,
        len(planned),
        len(batch.refused),
        len(events),
    )
    return len(planned)


def _planner(site: Site, transfer: Transfer, now: datetime) -> Decision:
    def plan(row: SiteSync) -> RowChange | None:
        if row.transfer is not None or row.state in _NOT_PLANNED:
            return None
        return RowChange(with_transfer(row, site, transfer, now))

    return plan


def _history(services: Dependencies, release: Release, sites: dict[str, Site]) -> dict[str, _SiteHistory]:
    """Per site: the blobs of the repository's other releases it has received, and rate samples from
    those arrivals."""
    earlier = services.store.list_releases(repository=release.repository, page_size=HISTORY_RELEASES + 1).items
    history: dict[str, _SiteHistory] = {}
    for other in earlier:
        if other.release_id == release.release_id or other.content is None:
            continue
        digests = {blob.digest for blob in other.content.blobs}
        for versioned in services.store.list_site_syncs(other.release_id):
            row = versioned.value
            arrived = row.synced_at or row.verified_at
            if row.state not in READY_STATES or arrived is None:
                continue
            known = history.setdefault(row.site, _SiteHistory())
            known.held |= digests
            site = sites.get(row.site)
            if row.transfer is not None and site is not None:
                sample = arrival_sample(
                    row.transfer.bytes_needed, arrived, row.pushed_at, site.schedule, site.sync_window
                )
                if sample is not None:
                    known.samples.append(sample)
    return history
