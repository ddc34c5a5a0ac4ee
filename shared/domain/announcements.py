"""Events out: what acrsync tells subscribers when a site or a whole release changes (pure).

Ids are deterministic, so a re-announcement after a crash or a redelivery is dropped by the
outbox and by subscribers that dedupe on the CloudEvents id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.domain.model import Release, SiteSync
from shared.domain.observations import OutboundEvent, OutboundEventType
from shared.domain.states import READY_STATES, SyncState


def release_is_ready(counts: Mapping[SyncState, int]) -> bool:
    """Every in-scope site (all but SKIPPED) holds the release, and there is at least one."""
    in_scope = sum(n for state, n in counts.items() if state is not SyncState.SKIPPED)
    ready = sum(counts.get(state, 0) for state in READY_STATES)
    return in_scope > 0 and ready == in_scope


def events_for_change(before: SiteSync, after: SiteSync, release: Release, now: datetime) -> list[OutboundEvent]:
    """The site events one row change raises (release-level ones come from :func:`events_for_release`)."""
    events: list[OutboundEvent] = []
    if _arrived(before, after):
        events.append(_site_event(OutboundEventType.SITE_SYNCED, after, release, now, key="synced"))
    if _went_stale(before, after):
        events.append(_stale_event(after, release, now))
    return events


def announces(before: SiteSync, after: SiteSync) -> bool:
    """Whether :func:`events_for_change` has anything to say about this change."""
    return _arrived(before, after) or _went_stale(before, after)


def _arrived(before: SiteSync, after: SiteSync) -> bool:
    return after.state in READY_STATES and before.state not in READY_STATES


def _went_stale(before: SiteSync, after: SiteSync) -> bool:
    return after.state is SyncState.STALE and before.state is not SyncState.STALE


def events_for_release(
    before: Mapping[SyncState, int], release: Release, counts: Mapping[SyncState, int], now: datetime
) -> list[OutboundEvent]:
    """The release events a recount raises: ready when every in-scope site now holds it, failed when
    a site failed; only when the counts crossed that line since ``before`` (the last recount)."""
    events: list[OutboundEvent] = []
    if release_is_ready(counts) and not release_is_ready(before):
        events.append(_release_event(OutboundEventType.RELEASE_READY, release, counts, now))
    if counts.get(SyncState.FAILED) and not before.get(SyncState.FAILED):
        events.append(_release_event(OutboundEventType.RELEASE_FAILED, release, counts, now))
    return events


def events_for_current_state(row: SiteSync, release: Release, now: datetime) -> list[OutboundEvent]:
    """Re-announce what the row already is (after a crash between save and publish)."""
    events: list[OutboundEvent] = []
    if row.state in READY_STATES:
        events.append(_site_event(OutboundEventType.SITE_SYNCED, row, release, now, key="synced"))
    if row.state is SyncState.STALE:
        events.append(_stale_event(row, release, now))
    return events


def wont_fit_event(row: SiteSync, release: Release, now: datetime) -> OutboundEvent:
    """A site whose bytes do not fit its next sync window, said when that is learnt (the release's first
    summary, seconds after the push): one event per row, whatever redelivers."""
    transfer = row.transfer
    rate = transfer.rate if transfer else None
    extra = {
        "bytes_needed": transfer.bytes_needed if transfer else None,
        "link_bits_per_second": rate.bits_per_second if rate else None,
        "rate_source": rate.source.value if rate else None,
    }
    return _site_event(OutboundEventType.SITE_WONT_FIT, row, release, now, key="wont_fit", extra=extra)


def _site_event(
    kind: OutboundEventType,
    row: SiteSync,
    release: Release,
    now: datetime,
    *,
    key: str,
    extra: Mapping[str, Any] | None = None,
) -> OutboundEvent:
    data: dict[str, Any] = {
        "release_id": row.release_id,
        "site": row.site,
        "state": row.state.value,
        "reason": row.reason.value if row.reason else None,
        "registry": release.registry,
        "repository": row.repository,
        "digest": row.digest,
        "tags": sorted(release.tags),
        "synced_at": _iso(row.synced_at),
        "verified_at": _iso(row.verified_at),
        "expected_ready_at": _iso(row.expected_ready_at),
        "evidence_source": row.evidence_source.value if row.evidence_source else None,
        **(extra or {}),
    }
    return _outbound(kind, f"{row.release_id}:{row.site}:{key}", release, f"sites/{row.site}", now, data=data)


def _stale_event(row: SiteSync, release: Release, now: datetime) -> OutboundEvent:
    # One event per stale episode: a row that recovers and goes stale again is news again.
    stale_since = (row.stale_at or row.updated_at).isoformat()
    return _site_event(OutboundEventType.SITE_STALE, row, release, now, key=f"stale:{stale_since}")


def _release_event(
    kind: OutboundEventType, release: Release, counts: Mapping[SyncState, int], now: datetime
) -> OutboundEvent:
    suffix = "ready" if kind is OutboundEventType.RELEASE_READY else "failed"
    data = {
        "release_id": release.release_id,
        "registry": release.registry,
        "repository": release.repository,
        "digest": release.digest,
        "tags": sorted(release.tags),
        "counts": {state.value: n for state, n in sorted(counts.items()) if n},
    }
    return _outbound(kind, f"{release.release_id}:{suffix}", release, f"releases/{release.release_id}", now, data=data)


def _outbound(
    kind: OutboundEventType, event_id: str, release: Release, subject: str, now: datetime, *, data: dict[str, Any]
) -> OutboundEvent:
    source = f"/acrsync/{release.registry}/{release.repository}"
    return OutboundEvent(event_id=event_id, type=kind, source=source, subject=subject, time=now, data=data)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
