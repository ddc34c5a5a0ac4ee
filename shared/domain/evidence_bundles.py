"""Signed release checkpoints and the evidence bundle that carries them, verified offline.

A checkpoint is a signed statement (in-toto Statement in a DSSE envelope, the receipts' key) of
where every site of a release stands at one moment: for each site in scope its state, how many
receipts its chain holds and the digest of the last one. The per-site heads are the leaves of a
Merkle tree in the RFC 6962 shape (leaf ``SHA-256(0x00 || leaf)``, node ``SHA-256(0x01 || left ||
right)``, split at the largest power of two below the size, as C2SP ``tlog-checkpoint`` logs use);
the statement signs the root and the size, and the bundle carries the leaves. A bundle that hides a
receipt, a site or a whole chain no longer matches the signed root, or its chains no longer end
where the checkpoint says.

Bundles (:data:`BUNDLE_MEDIA_TYPE`) hold the release view, the key, the checkpoint with its leaves,
every per-site receipt up to the heads it names and, for releases written before receipts chained
per site, the per-release chain (``release_chain_receipts``) whose head the checkpoint also signs.
Bundles of the older format (one chain, unsigned head) verify as they did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.domain.model import Release, SiteSync
from shared.domain.receipts import (
    LEGACY_BUNDLE_MEDIA_TYPE,
    SITE_PREDICATE_TYPE,
    STATEMENT_TYPE,
    ReceiptError,
    VerifiedBundle,
    bundle_parts,
    canonical_json,
    check_release,
    check_signature,
    embedded_key,
    image_subject,
    key_id,
    open_statement,
    verify_chain,
    verify_legacy_bundle,
    verify_release_chain,
)
from shared.domain.states import SyncState

BUNDLE_MEDIA_TYPE = "application/vnd.acrsync.evidence-bundle.v2+json"
CHECKPOINT_PREDICATE_TYPE = "https://acrsync.dev/release-checkpoint/v1"
_CHECKPOINT_FIELDS = ("release_id", "registry", "repository", "as_of", "sites", "root", "counts", "release_chain")
_RECEIPT_FIELDS = ("site", "release_id", "sequence", "previous")


@dataclass(frozen=True)
class SiteHead:
    """One leaf of a checkpoint: a site's state and the head of its receipt chain."""

    site: str
    state: str
    sequence: int
    head: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"site": self.site, "state": self.state, "sequence": self.sequence, "head": self.head}


def site_heads(rows: Sequence[SiteSync]) -> list[SiteHead]:
    """The leaves for a release's rows, by site: every site in scope, and any out of scope that
    already holds receipts (a site never drops out of the record)."""
    heads = [
        SiteHead(row.site, row.state.value, row.receipt_sequence, row.receipt_head)
        for row in rows
        if row.state is not SyncState.SKIPPED or row.receipt_sequence
    ]
    return sorted(heads, key=lambda head: head.site)


def merkle_root(heads: Sequence[SiteHead]) -> str:
    """RFC 6962 Merkle tree hash (hex) of the heads in order; SHA-256 of nothing when empty."""
    return _tree_hash([hashlib.sha256(b"\x00" + canonical_json(head.as_dict())).digest() for head in heads]).hex()


def _tree_hash(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below the size
    return hashlib.sha256(b"\x01" + _tree_hash(leaves[:split]) + _tree_hash(leaves[split:])).digest()


def checkpoint_as_of(release: Release, rows: Sequence[SiteSync]) -> datetime:
    """The moment a checkpoint over ``rows`` describes: the newest change among them (the push when
    none changed yet). Signing the same state twice therefore gives the same bytes (Ed25519 is
    deterministic), so an unchanged bundle keeps its ETag. A change of the release's annotations is a
    change too."""
    annotated = release.annotations.set_at if release.annotations is not None else None
    return max([row.updated_at for row in rows] + ([annotated] if annotated else []), default=release.pushed_at)


def annotations_digest(record: Mapping[str, Any] | None) -> str | None:
    """SHA-256 (hex) of a release's annotations record (:meth:`Annotations.record`) in canonical JSON:
    what a checkpoint signs of them; ``None`` for a release without annotations."""
    return hashlib.sha256(canonical_json(record)).hexdigest() if record is not None else None


def checkpoint_statement(release: Release, heads: Sequence[SiteHead], as_of: datetime) -> dict[str, Any]:
    """The in-toto statement of a release checkpoint over ``heads`` (from :func:`site_heads`), as
    of ``as_of`` (from :func:`checkpoint_as_of`)."""
    counts: dict[str, int] = {}
    for head in heads:
        counts[head.state] = counts.get(head.state, 0) + 1
    legacy = {"sequence": release.receipt_sequence, "head": release.receipt_head} if release.receipt_sequence else None
    return {
        "_type": STATEMENT_TYPE,
        "subject": image_subject(release),
        "predicateType": CHECKPOINT_PREDICATE_TYPE,
        "predicate": {
            "release_id": release.release_id,
            "registry": release.registry,
            "repository": release.repository,
            "as_of": as_of.isoformat().replace("+00:00", "Z"),
            "sites": len(heads),
            "root": merkle_root(heads),
            "counts": dict(sorted(counts.items())),
            "release_chain": legacy,
            "annotations": annotations_digest(release.annotations.record() if release.annotations else None),
        },
    }


# -- verification -------------------------------------------------------------------------------


def verify_bundle(bundle: Any, *, public_key: Ed25519PublicKey | None = None) -> VerifiedBundle:
    """Check an evidence bundle offline: every receipt's signature, every site's chain without gaps
    ending at the head the signed checkpoint names, the checkpoint's signature and that it lists
    every site, and that everything is about the bundle's release.

    ``public_key`` pins the expected key; without it the bundle's own key is used (integrity, not
    origin). Bundles of the older one-chain format are checked as before.

    Raises:
        NotABundle: not an evidence bundle.
        ReceiptError: the first thing that is wrong, naming the site and receipt.
    """
    if isinstance(bundle, dict) and bundle.get("mediaType") == LEGACY_BUNDLE_MEDIA_TYPE:
        return verify_legacy_bundle(bundle, public_key=public_key)
    release, receipts = bundle_parts(bundle, BUNDLE_MEDIA_TYPE)
    key = public_key or embedded_key(bundle)
    keyid = key_id(key)
    subject = f"{release['registry']}/{release['repository']}"
    predicate, heads = _verified_checkpoint(bundle.get("checkpoint"), key, keyid, release, subject)
    if "annotations" in predicate and annotations_digest(bundle.get("annotations")) != predicate["annotations"]:
        raise ReceiptError("annotations: the bundle's annotations are not the ones the signed checkpoint covers")
    chains = _verified_site_chains(receipts, heads, key, release)
    legacy = _verified_release_chain(bundle.get("release_chain_receipts", []), predicate, key, release)
    return VerifiedBundle(
        release_id=release["id"],
        subject=subject,
        digest=release["digest"],
        keyid=keyid,
        receipts=sum(len(chain) for chain in chains.values()) + legacy,
        head=predicate["root"],
        sites=tuple(sorted(site for site, chain in chains.items() if chain)),
        chains=chains,
        checkpoint=str(predicate["as_of"]),
        heads={head.site: (head.state, head.sequence, head.head) for head in heads},
    )


def _verified_checkpoint(
    checkpoint: Any, key: Ed25519PublicKey, keyid: str, release: Mapping[str, Any], subject: str
) -> tuple[dict[str, Any], list[SiteHead]]:
    if not isinstance(checkpoint, dict) or "envelope" not in checkpoint:
        raise ReceiptError("the bundle has no release checkpoint: nothing says which receipts it must hold")
    envelope = checkpoint["envelope"]
    if isinstance(envelope, dict) and not envelope.get("signatures"):
        raise ReceiptError("checkpoint: not signed")
    statement, problem = open_statement(envelope, CHECKPOINT_PREDICATE_TYPE, _CHECKPOINT_FIELDS)
    if statement is None:
        raise ReceiptError(f"checkpoint: {problem or 'the payload is not an acrsync release checkpoint'}")
    check_signature("checkpoint", envelope, key, keyid, receipt=None)
    check_release("checkpoint", None, statement, release, subject)
    predicate = statement["predicate"]
    heads = _leaves(checkpoint.get("sites"))
    if merkle_root(heads) != predicate["root"] or len(heads) != predicate["sites"]:
        raise ReceiptError(
            f"checkpoint: its list of {len(heads)} sites does not match the signed root over "
            f"{predicate['sites']} sites: a site was dropped, added or changed"
        )
    return predicate, heads


def _leaves(sites: Any) -> list[SiteHead]:
    if not isinstance(sites, list):
        raise ReceiptError("checkpoint: no list of sites")
    heads: list[SiteHead] = []
    for index, item in enumerate(sites, start=1):
        shaped = (
            isinstance(item, dict)
            and isinstance(item.get("site"), str)
            and isinstance(item.get("state"), str)
            and isinstance(item.get("sequence"), int)
            and not isinstance(item.get("sequence"), bool)
            and item["sequence"] >= 0
            and (item.get("head") is None) == (item["sequence"] == 0)
            and (item.get("head") is None or isinstance(item.get("head"), str))
        )
        if not shaped:
            raise ReceiptError(f"checkpoint: site entry #{index} is not {{site, state, sequence, head}}")
        heads.append(SiteHead(item["site"], item["state"], item["sequence"], item.get("head")))
    names = [head.site for head in heads]
    if names != sorted(set(names)):
        raise ReceiptError("checkpoint: its sites are not listed once each, in order")
    return heads


def _verified_site_chains(
    receipts: Sequence[Any], heads: Sequence[SiteHead], key: Ed25519PublicKey, release: Mapping[str, Any]
) -> dict[str, tuple[str, ...]]:
    by_site: dict[str, list[Any]] = {}
    for number, envelope in enumerate(receipts, start=1):
        statement, problem = open_statement(envelope, SITE_PREDICATE_TYPE, _RECEIPT_FIELDS)
        if statement is None:
            reason = problem or "it is not an acrsync per-site delivery receipt"
            raise ReceiptError(f"receipt #{number} of the bundle: {reason}", receipt=number)
        by_site.setdefault(str(statement["predicate"]["site"]), []).append(envelope)
    named = {head.site: head for head in heads}
    for site in by_site:
        if site not in named:
            raise ReceiptError(f"site {site}: it has receipts, but the checkpoint does not list it")
    chains: dict[str, tuple[str, ...]] = {}
    for head in heads:
        digests = verify_chain(
            by_site.get(head.site, []), key=key, release=release, predicate_type=SITE_PREDICATE_TYPE, site=head.site
        ).digests
        held = len(digests)
        if held < head.sequence:
            raise ReceiptError(
                f"site {head.site}: receipt #{held + 1} is missing: the checkpoint names receipt "
                f"#{head.sequence} as the site's head",
                receipt=held + 1,
            )
        if held > head.sequence:
            raise ReceiptError(
                f"site {head.site}: receipt #{head.sequence + 1} is beyond the head the checkpoint names "
                f"(receipt #{head.sequence})",
                receipt=head.sequence + 1,
            )
        if held and digests[-1] != head.head:
            raise ReceiptError(
                f"site {head.site}: receipt #{held}: its digest {digests[-1]} is not the head {head.head} "
                "the checkpoint names",
                receipt=held,
            )
        chains[head.site] = digests
    return chains


def _verified_release_chain(
    receipts: Any, predicate: Mapping[str, Any], key: Ed25519PublicKey, release: Mapping[str, Any]
) -> int:
    """The receipts of the older per-release chain, which must end at the head the checkpoint signs."""
    if not isinstance(receipts, list):
        raise ReceiptError("release_chain_receipts is not a list")
    signed = predicate["release_chain"]
    sequence = signed.get("sequence", 0) if isinstance(signed, dict) else 0
    head = signed.get("head") if isinstance(signed, dict) else None
    checked = verify_release_chain(receipts, key=key, release=release)
    held = len(checked.digests)
    if held < sequence:
        raise ReceiptError(
            f"release chain: receipt #{held + 1} is missing: the checkpoint names receipt #{sequence} as its head",
            receipt=held + 1,
        )
    if held > sequence:
        raise ReceiptError(
            f"release chain: receipt #{sequence + 1} is beyond the head the checkpoint names", receipt=sequence + 1
        )
    if checked.head != head:
        raise ReceiptError(f"release chain: receipt #{held}: its digest is not the head the checkpoint names")
    return held


def verify_consistency(newer: VerifiedBundle, older: VerifiedBundle) -> int:
    """Check that ``newer`` (verified) extends ``older`` (verified): the same release, no site that
    ``older``'s checkpoint names has vanished or gone back, and each chain still holds the receipts
    ``older`` ended at. Returns how many sites moved on.

    Raises:
        ReceiptError: the first inconsistency, naming the site.
    """
    if newer.release_id != older.release_id:
        raise ReceiptError(
            f"the bundles are about different releases: {newer.release_id} and {older.release_id} (--against)"
        )
    if older.checkpoint is None or newer.checkpoint is None:
        raise ReceiptError("both bundles need a release checkpoint to be compared (older bundles have none)")
    if _instant(newer.checkpoint) < _instant(older.checkpoint):
        raise ReceiptError(
            f"the checkpoint as of {newer.checkpoint} is older than the one it is checked against "
            f"({older.checkpoint}): swap the bundles"
        )
    moved = 0
    for site, (_, sequence, head) in sorted(older.heads.items()):
        if site not in newer.heads:
            raise ReceiptError(f"site {site} vanished: the older checkpoint names it with receipt #{sequence}")
        now_sequence = newer.heads[site][1]
        if now_sequence < sequence:
            raise ReceiptError(
                f"site {site} went backwards: receipt #{sequence} in the older checkpoint, #{now_sequence} now"
            )
        if sequence and newer.chains[site][sequence - 1] != head:
            raise ReceiptError(f"site {site}: receipt #{sequence} is not the one the older checkpoint names")
        moved += now_sequence > sequence or newer.heads[site][0] != older.heads[site][0]
    return moved


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReceiptError(f"the checkpoint's as_of {text!r} is not a time") from None
