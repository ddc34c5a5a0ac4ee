"""Release checkpoints and per-site chains, offline: the Merkle tree in the RFC 6962 shape, every
receipt of a chain dropped in turn (first, middle, newest), and a later bundle checked against an
earlier one."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.domain.evidence_bundles import (
    BUNDLE_MEDIA_TYPE,
    SiteHead,
    checkpoint_statement,
    merkle_root,
    verify_bundle,
    verify_consistency,
)
from shared.domain.model import Release
from shared.domain.receipts import (
    ReceiptError,
    ReceiptSigner,
    VerifiedBundle,
    canonical_json,
    delivery_statement,
    envelope_digest,
)
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from tests.builders import T0, make_release, make_row


@pytest.fixture
def signer() -> ReceiptSigner:
    return ReceiptSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def leaf(head: SiteHead) -> bytes:
    return hashlib.sha256(b"\x00" + canonical_json(head.as_dict())).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_the_root_is_the_rfc_6962_merkle_tree_hash_over_the_site_heads() -> None:
    heads = [SiteHead(f"site-{i}", "VERIFIED", 1, f"{i:064x}") for i in range(5)]
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle_root(heads[:1]) == leaf(heads[0]).hex()
    # Five leaves split at four (the largest power of two below five): ((0 1)(2 3)) 4.
    left = node(node(leaf(heads[0]), leaf(heads[1])), node(leaf(heads[2]), leaf(heads[3])))
    assert merkle_root(heads) == node(left, leaf(heads[4])).hex()
    changed = [*heads[:2], replace(heads[2], sequence=2), *heads[3:]]
    assert merkle_root(changed) != merkle_root(heads)


def site_chain(signer: ReceiptSigner, release: Release, site: str, length: int) -> list[dict[str, Any]]:
    """Receipts 1..length of one site's chain (a site whose digest arrived, went and came back)."""
    envelopes: list[dict[str, Any]] = []
    previous = None
    for number in range(1, length + 1):
        row = make_row(release, site).moved_to(
            SyncState.SYNCED,
            SyncReason.SYNCED_AFTER_PUSH,
            T0 + timedelta(minutes=number),
            evidence_source=EvidenceSource.ARM_LAST_SYNC,
        )
        envelope = signer.sign(delivery_statement(release, row, sequence=number, previous=previous, window=None))
        envelopes.append(envelope)
        previous = envelope_digest(envelope)
    return envelopes


def bundle_of(signer: ReceiptSigner, release: Release, chains: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    heads = [
        SiteHead(site, "SYNCED" if chain else "PENDING", len(chain), envelope_digest(chain[-1]) if chain else None)
        for site, chain in sorted(chains.items())
    ]
    checkpoint = signer.sign(checkpoint_statement(release, heads, T0 + timedelta(hours=1)))
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "release": {
            "id": release.release_id,
            "registry": release.registry,
            "repository": release.repository,
            "digest": release.digest,
        },
        "keyid": signer.keyid,
        "public_key": signer.public_key_pem,
        "checkpoint": {"envelope": checkpoint, "sites": [head.as_dict() for head in heads]},
        "receipts": [envelope for _, chain in sorted(chains.items()) for envelope in chain],
        "release_chain_receipts": [],
    }


def test_a_bundle_of_per_site_chains_verifies(signer: ReceiptSigner) -> None:
    release = make_release()
    chains = {"plant-01": site_chain(signer, release, "plant-01", 4), "plant-02": [], "plant-03": []}
    chains["plant-03"] = site_chain(signer, release, "plant-03", 1)
    verified = verify_bundle(bundle_of(signer, release, chains), public_key=signer.public_key)
    assert verified.receipts == 5 and verified.sites == ("plant-01", "plant-03")
    assert verified.heads["plant-02"] == ("PENDING", 0, None)
    assert verified.chains["plant-01"] == tuple(envelope_digest(e) for e in chains["plant-01"])


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        (0, "site plant-01: receipt #1 is missing: position 1 holds #2"),
        (1, "site plant-01: receipt #2 is missing: position 2 holds #3"),
        (2, "site plant-01: receipt #3 is missing: position 3 holds #4"),
        (3, "site plant-01: receipt #4 is missing: the checkpoint names receipt #4 as the site's head"),
    ],
)
def test_dropping_any_receipt_of_a_chain_is_named(signer: ReceiptSigner, dropped: int, message: str) -> None:
    release = make_release()
    bundle = bundle_of(signer, release, {"plant-01": site_chain(signer, release, "plant-01", 4)})
    del bundle["receipts"][dropped]
    with pytest.raises(ReceiptError) as raised:
        verify_bundle(bundle, public_key=signer.public_key)
    assert str(raised.value) == message


def test_a_receipt_moved_into_another_sites_chain_is_named(signer: ReceiptSigner) -> None:
    release = make_release()
    chains = {site: site_chain(signer, release, site, 1) for site in ("plant-01", "plant-02")}
    bundle = bundle_of(signer, release, chains)
    bundle["checkpoint"]["sites"][1]["head"] = envelope_digest(chains["plant-01"][0])
    with pytest.raises(ReceiptError, match="does not match the signed root"):
        verify_bundle(bundle, public_key=signer.public_key)


def verified(heads: dict[str, tuple[str, int, str | None]], chains: dict[str, tuple[str, ...]], at: str) -> Any:
    return VerifiedBundle(
        release_id="r" * 32,
        subject="s",
        digest="d",
        keyid="k",
        receipts=sum(len(c) for c in chains.values()),
        head=None,
        sites=tuple(sorted(chains)),
        chains=chains,
        checkpoint=at,
        heads=heads,
    )


def test_a_later_checkpoint_must_extend_the_earlier_one() -> None:
    older = verified(
        {"a": ("SYNCED", 1, "h1"), "b": ("PENDING", 0, None)}, {"a": ("h1",), "b": ()}, "2026-11-24T10:00:00Z"
    )
    newer = verified(
        {"a": ("VERIFIED", 2, "h2"), "b": ("SYNCED", 1, "g1")},
        {"a": ("h1", "h2"), "b": ("g1",)},
        "2026-11-24T11:00:00Z",
    )
    assert verify_consistency(newer, older) == 2
    assert verify_consistency(older, older) == 0
    cases = {
        "site b vanished: the older checkpoint names it with receipt #0": verified(
            {"a": ("VERIFIED", 2, "h2")}, {"a": ("h1", "h2")}, "2026-11-24T11:00:00Z"
        ),
        "site a went backwards: receipt #1 in the older checkpoint, #0 now": verified(
            {"a": ("PENDING", 0, None), "b": ("PENDING", 0, None)}, {"a": (), "b": ()}, "2026-11-24T11:00:00Z"
        ),
        "site a: receipt #1 is not the one the older checkpoint names": verified(
            {"a": ("VERIFIED", 2, "x2"), "b": ("PENDING", 0, None)},
            {"a": ("x1", "x2"), "b": ()},
            "2026-11-24T11:00:00Z",
        ),
    }
    for message, forged in cases.items():
        with pytest.raises(ReceiptError) as raised:
            verify_consistency(forged, older)
        assert str(raised.value) == message
    with pytest.raises(ReceiptError, match="swap the bundles"):
        verify_consistency(older, newer)
    with pytest.raises(ReceiptError, match="different releases"):
        verify_consistency(replace(newer, release_id="0" * 32), older)
