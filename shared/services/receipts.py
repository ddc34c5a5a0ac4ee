"""Signed delivery receipts on the write path: every arrival (a row reaching SYNCED or VERIFIED) is
signed in the same atomic write as the row, its evidence and the release counters. Reading them back
as one verifiable bundle is :mod:`shared.services.bundles`'s job.

The chain head (how many receipts, and the SHA-256 of the last envelope) lives in the release
header. :func:`receipt_hook` runs inside :func:`shared.services.rows.update_row`'s attempt: it reads
the head from the header that attempt has just read, signs receipt ``head + 1`` and writes the new
head with the row. The header write is conditional on its ETag, so when two workers race for one
release only one commits; the other retries on fresh reads and signs the next number. The chain is
therefore exact: no gaps, no two receipts with the same ``previous``.

The envelope is stored on the evidence record of the transition it attests (``details["dsse"]``,
with ``details["receipt_sequence"]``), so it round-trips through every store adapter unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from shared.domain.changes import RowChange
from shared.domain.model import Evidence, Release, Site, SiteSync
from shared.domain.receipts import (
    arrival_time,
    canonical_json,
    delivery_statement,
    envelope_digest,
)
from shared.domain.states import READY_STATES, EvidenceSource
from shared.domain.windows import Window, window_at_or_after
from shared.errors import InvalidInput
from shared.services.dependencies import Dependencies
from shared.services.rows import StateChangeHook

RECEIPT_DETAIL = "dsse"
SEQUENCE_DETAIL = "receipt_sequence"
RECEIPT_SUMMARY = "delivery receipt"


def receipt_hook(services: Dependencies, site: Site | None) -> StateChangeHook:
    """The :data:`~shared.services.rows.StateChangeHook` that signs a row's arrival at ``site``.

    Every path that can move a row to SYNCED or VERIFIED passes it to ``update_row``. Other moves,
    and every move when no key is configured, pass through unchanged.
    """

    def sign(before: SiteSync, change: RowChange, release: Release) -> tuple[Release, Sequence[Evidence]]:
        after = change.row
        if after.state not in READY_STATES or after.state is before.state:
            return release, change.evidence
        signer = services.signer
        if signer is None:
            return release, change.evidence
        sequence = release.receipt_sequence + 1
        window = _window(site, arrival_time(after))
        statement = delivery_statement(release, after, sequence=sequence, previous=release.receipt_head, window=window)
        envelope = signer.sign(statement)
        text = canonical_json(envelope).decode()
        evidence = _with_receipt(change.evidence, before, after, text, sequence)
        return replace(release, receipt_sequence=sequence, receipt_head=envelope_digest(envelope)), evidence

    return sign


def _window(site: Site | None, at: datetime) -> Window | None:
    """The site's sync window that was open at ``at``; ``None`` for continuous sync or outside a window."""
    if site is None or site.schedule is None:
        return None
    try:
        window = window_at_or_after(site.schedule, site.sync_window, at)
    except (InvalidInput, ValueError):
        return None
    return window if window.contains(at) else None


def _with_receipt(
    evidence: Sequence[Evidence], before: SiteSync, after: SiteSync, envelope: str, sequence: int
) -> list[Evidence]:
    """The change's evidence with the receipt on the record of this transition (one is always there;
    a record of its own otherwise)."""
    receipt = {RECEIPT_DETAIL: envelope, SEQUENCE_DETAIL: str(sequence)}
    records = list(evidence)
    for index, record in enumerate(records):
        if record.site == after.site and record.state_from is before.state and record.state_to is after.state:
            records[index] = replace(record, details={**record.details, **receipt})
            return records
    at = arrival_time(after)
    records.append(
        Evidence(
            release_id=after.release_id,
            site=after.site,
            source=after.evidence_source or EvidenceSource.OPERATOR,
            observed_at=at,
            recorded_at=after.updated_at,
            summary=f"{RECEIPT_SUMMARY} #{sequence}",
            state_from=before.state,
            state_to=after.state,
            reason=after.reason,
            observed_digest=after.digest,
            details=receipt,
        )
    )
    return records
