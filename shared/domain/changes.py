"""A change to one site-sync row: the new row and the evidence that justifies it (pure values)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.domain.model import Evidence, SiteSync
from shared.domain.states import EvidenceSource, SyncReason, SyncState


@dataclass(frozen=True)
class RowChange:
    """What a decision wants written: the new row and the evidence that justifies it."""

    row: SiteSync
    evidence: Sequence[Evidence] = ()


def transition(
    row: SiteSync,
    target: SyncState,
    reason: SyncReason,
    *,
    source: EvidenceSource,
    summary: str,
    at: datetime,
    details: Mapping[str, str] | None = None,
    observed_digest: str | None = None,
    **changes: object,
) -> RowChange:
    """Move ``row`` to ``target`` and write the evidence record that every state change carries.

    Raises:
        IllegalTransition: the move is not in the transitions table.
    """
    moved = row.moved_to(target, reason, at, evidence_source=source, **changes)
    evidence = Evidence(
        release_id=row.release_id,
        site=row.site,
        source=source,
        observed_at=at,
        recorded_at=at,
        summary=summary,
        state_from=row.state,
        state_to=target,
        reason=reason,
        observed_digest=observed_digest,
        details=dict(details or {}),
    )
    return RowChange(moved, [evidence])
