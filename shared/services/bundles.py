"""Signed delivery receipts read back: a release's receipts and a fresh signed checkpoint as one
verifiable bundle, and the public key.

The receipts are written by :mod:`shared.services.receipts` on the write path; see there for the chains.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shared.domain.evidence_bundles import BUNDLE_MEDIA_TYPE, checkpoint_as_of
from shared.domain.model import Evidence, Release, SiteSync
from shared.errors import SigningKeyNotConfigured
from shared.services import status
from shared.services.dependencies import Dependencies
from shared.services.receipts import CHAIN_DETAIL, RECEIPT_DETAIL, SEQUENCE_DETAIL, SITE_CHAIN, sign_checkpoint


def evidence_bundle(services: Dependencies, release_id: str) -> dict[str, Any]:
    """The release, the public key, a checkpoint signed now over every site's receipt head, and
    every receipt up to those heads (by site, then sequence).

    The rows are read before the evidence: every receipt up to a row's head is stored by then
    (they were written with it), and any written since are left out, so the bundle is a consistent
    snapshot. Costs one partition read of rows, one of evidence and one signature.

    Raises:
        ReleaseNotFound: no such release.
        SigningKeyNotConfigured: no key, so nothing is signed and there is no bundle to verify.
    """
    signer = services.signer
    if signer is None:
        raise SigningKeyNotConfigured()
    release = status.get_release(services, release_id)
    rows = [versioned.value for versioned in services.store.list_site_syncs(release_id)]
    checkpoint = sign_checkpoint(signer, release, rows)
    site_receipts, release_receipts = _receipts(services.store.list_evidence(release_id), rows, release)
    view = status.release_view(release, counts=status.count_rows(rows), counts_as_of=checkpoint_as_of(release, rows))
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "release": view,
        "keyid": signer.keyid,
        "public_key": signer.public_key_pem,
        "checkpoint": checkpoint,
        # The runbook fields and their history, as the checkpoint signs them (its predicate's digest).
        "annotations": release.annotations.record() if release.annotations is not None else None,
        "receipts": site_receipts,
        "release_chain_receipts": release_receipts,
    }


def _receipts(records: Sequence[Evidence], rows: Sequence[SiteSync], release: Release) -> tuple[list[Any], list[Any]]:
    """The stored envelopes: per-site ones up to each row's head, and those of the older per-release
    chain up to the header's head."""
    heads = {row.site: row.receipt_sequence for row in rows}
    by_site: dict[tuple[str, int], Any] = {}
    by_release: dict[int, Any] = {}
    for record in records:
        text, number = record.details.get(RECEIPT_DETAIL), record.details.get(SEQUENCE_DETAIL, "")
        if text is None or not number.isdigit():
            continue
        sequence = int(number)
        if record.details.get(CHAIN_DETAIL) == SITE_CHAIN:
            if 0 < sequence <= heads.get(record.site, 0):
                by_site[(record.site, sequence)] = _parsed(text)
        elif 0 < sequence <= release.receipt_sequence:
            by_release[sequence] = _parsed(text)
    return [by_site[key] for key in sorted(by_site)], [by_release[key] for key in sorted(by_release)]


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # kept as stored: verification names it


def signing_key_view(services: Dependencies) -> dict[str, str]:
    """The public half of the receipt-signing key.

    Raises:
        SigningKeyNotConfigured: no key (Azure without ``ACRSYNC_SIGNING_KEY``).
    """
    signer = services.signer
    if signer is None:
        raise SigningKeyNotConfigured()
    return {"keyid": signer.keyid, "algorithm": "ed25519", "public_key": signer.public_key_pem}
