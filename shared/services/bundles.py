"""Signed delivery receipts read back: a release's receipts as one verifiable bundle, and the public key.

The receipts are written by :mod:`shared.services.receipts` on the write path; see there for the chain.
"""

from __future__ import annotations

import json
from typing import Any

from shared.domain.receipts import BUNDLE_MEDIA_TYPE
from shared.errors import SigningKeyNotConfigured
from shared.services import status
from shared.services.dependencies import Dependencies
from shared.services.receipts import RECEIPT_DETAIL, SEQUENCE_DETAIL


def evidence_bundle(services: Dependencies, release_id: str) -> dict[str, Any]:
    """The release, the public key and every receipt of the release in sequence order.

    The header is read first: the receipts up to its chain head are all stored by then (they were
    written with it), and any written since are left out, so the bundle is a consistent snapshot.

    Raises:
        ReleaseNotFound: no such release.
    """
    release = status.get_release(services, release_id)
    found: dict[int, Any] = {}
    for record in services.store.list_evidence(release_id):
        text, number = record.details.get(RECEIPT_DETAIL), record.details.get(SEQUENCE_DETAIL, "")
        if text is None or not number.isdigit() or not 0 < int(number) <= release.receipt_sequence:
            continue
        try:
            found[int(number)] = json.loads(text)
        except ValueError:
            found[int(number)] = text  # kept as stored: verification names it
    signer = services.signer
    view = status.release_view(release)
    view["receipts"] = {"sequence": release.receipt_sequence, "head": release.receipt_head}
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "release": view,
        "keyid": signer.keyid if signer else None,
        "public_key": signer.public_key_pem if signer else None,
        "receipts": [found[number] for number in sorted(found)],
    }


def signing_key_view(services: Dependencies) -> dict[str, str]:
    """The public half of the receipt-signing key.

    Raises:
        SigningKeyNotConfigured: no key (Azure without ``ACRSYNC_SIGNING_KEY``).
    """
    signer = services.signer
    if signer is None:
        raise SigningKeyNotConfigured()
    return {"keyid": signer.keyid, "algorithm": "ed25519", "public_key": signer.public_key_pem}
