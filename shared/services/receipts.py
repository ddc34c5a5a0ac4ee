"""Signed delivery receipts on the write path: every arrival (a row reaching SYNCED or VERIFIED) is
signed in the same conditional write as the row and its evidence. Reading them back as one
verifiable bundle is :mod:`shared.services.bundles`'s job; release checkpoints are signed there and
by :mod:`shared.services.summaries`.

Receipts chain per (release, site): the head (how many receipts, and the SHA-256 of the last
envelope) lives on the site's row. :func:`receipt_hook` runs inside
:func:`shared.services.rows.update_row`'s attempt: it reads the head from the row that attempt has
just read, signs receipt ``head + 1`` and writes the new head with the row. Jobs of one site run
one at a time, and the row write is conditional on its ETag, so when an edge event races a check
only one commits and the other signs again on the fresh read: no gaps, no two receipts with the
same ``previous``, and nothing shared with the other sites of the release.

The envelope is stored on the evidence record of the transition it attests (``details["dsse"]``,
with ``details["receipt_sequence"]`` and ``details["receipt_chain"] = "site"``), so it round-trips
through every store adapter unchanged. Records without ``receipt_chain`` hold the receipts of the
older per-release chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.domain.changes import RowChange
from shared.domain.evidence_bundles import checkpoint_as_of, checkpoint_statement, site_heads
from shared.domain.model import Evidence, Release, Site, SiteSync
from shared.domain.receipts import (
    ReceiptSigner,
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
CHAIN_DETAIL = "receipt_chain"
SITE_CHAIN = "site"
RECEIPT_SUMMARY = "delivery receipt"


def receipt_hook(services: Dependencies, site: Site | None, release: Callable[[], Release]) -> StateChangeHook:
    """The :data:`~shared.services.rows.StateChangeHook` that signs a row's arrival at ``site``.

    Every path that can move a row to SYNCED or VERIFIED passes it to ``update_row``. Other moves,
    and every move when no key is configured, pass through unchanged. ``release`` gives the header
    (the statement names the release's registry); it is asked only when a receipt is signed.
    """

    def sign(before: SiteSync, change: RowChange) -> RowChange:
        after = change.row
        if after.state not in READY_STATES or after.state is before.state:
            return change
        signer = services.signer
        if signer is None:
            return change
        sequence = before.receipt_sequence + 1
        window = _window(site, arrival_time(after))
        statement = delivery_statement(release(), after, sequence=sequence, previous=before.receipt_head, window=window)
        envelope = signer.sign(statement)
        text = canonical_json(envelope).decode()
        evidence = _with_receipt(change.evidence, before, after, text, sequence)
        signed = replace(after, receipt_sequence=sequence, receipt_head=envelope_digest(envelope))
        return RowChange(signed, evidence)

    return sign


def sign_checkpoint(signer: ReceiptSigner, release: Release, rows: Sequence[SiteSync]) -> dict[str, Any]:
    """A signed release checkpoint over the rows' receipt heads, with the leaves a verifier needs:
    ``{"envelope": <DSSE>, "sites": [{site, state, sequence, head}, ...]}``."""
    heads = site_heads(rows)
    envelope = signer.sign(checkpoint_statement(release, heads, checkpoint_as_of(release, rows)))
    return {"envelope": envelope, "sites": [head.as_dict() for head in heads]}


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
    receipt = {RECEIPT_DETAIL: envelope, SEQUENCE_DETAIL: str(sequence), CHAIN_DETAIL: SITE_CHAIN}
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
