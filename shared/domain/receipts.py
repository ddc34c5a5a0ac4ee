"""Signed delivery receipts: in-toto Statements in DSSE envelopes, signed with Ed25519, chained per site.

A receipt says "this digest of this repository reached this site, in this state, at this time, and
this is what proved it". Its statement (in-toto Statement v1) names the image as the subject; the
DSSE envelope signs the statement's bytes through the DSSE pre-authentication encoding (PAE), so a
payload cannot be reinterpreted under another type. Each receipt carries ``sequence`` (1, 2, ...)
and ``previous``: the SHA-256 of the previous receipt's envelope in canonical JSON
(:func:`envelope_digest`).

Receipts chain per (release, site) (:data:`SITE_PREDICATE_TYPE`): the head lives on the site's row,
so a site's check writes nothing shared with other sites. A signed release checkpoint
(:mod:`shared.domain.evidence_bundles`) then names every site's head, so dropping, reordering,
editing or swapping in a receipt breaks a signature, a chain or the checkpoint. Releases written
before that chained receipts per release (:data:`PREDICATE_TYPE`); :func:`verify_release_chain`
still checks those.

Everything here is computation on bytes (no I/O): the services sign, the CLI verifies offline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.domain.model import Release, SiteSync
from shared.domain.names import release_id_for
from shared.domain.states import SyncState
from shared.domain.windows import Window

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# One chain per release: what releases written before per-site chains hold.
PREDICATE_TYPE = "https://acrsync.dev/delivery-receipt/v1"
# One chain per (release, site): what every receipt is signed as now.
SITE_PREDICATE_TYPE = "https://acrsync.dev/delivery-receipt/v2"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# A bundle of one release chain, with an unsigned head (bundles made before checkpoints).
LEGACY_BUNDLE_MEDIA_TYPE = "application/vnd.acrsync.evidence-bundle.v1+json"
BUNDLE_MEDIA_TYPE = LEGACY_BUNDLE_MEDIA_TYPE  # kept for readers of the old name
RAW_KEY_BYTES = 32
_PREDICATE_FIELDS = (
    "site",
    "registry",
    "repository",
    "release_id",
    "state",
    "observed_at",
    "evidence_source",
    "window",
    "sequence",
    "previous",
)


# -- encodings ----------------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """The one serialisation that is signed and hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``"DSSEv1" SP len(type) SP type SP len(payload) SP payload``
    (lengths as ASCII decimal byte counts)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def envelope_digest(envelope: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of an envelope in canonical JSON: what the next receipt's ``previous`` holds."""
    return hashlib.sha256(canonical_json(dict(envelope))).hexdigest()


# -- keys ---------------------------------------------------------------------------------------


def load_private_key(text: str | bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or from base64 of its 32 raw bytes.

    Raises:
        ValueError: not such a key. The message never contains the input.
    """
    data = text.encode() if isinstance(text, str) else text
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither PEM nor base64") from None
    if len(raw) != RAW_KEY_BYTES:
        raise ValueError(f"a raw Ed25519 private key is {RAW_KEY_BYTES} bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo).

    Raises:
        ValueError: not an Ed25519 public key in PEM.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data.strip())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the PEM key is not an Ed25519 public key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's fingerprint: SHA-256 (hex) of its 32 raw bytes, the same whatever encoding carries it."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file holding it is the protection: mode 0600, or Key Vault)."""
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class ReceiptSigner:
    """Signs statements into DSSE envelopes with one Ed25519 key. Its ``repr`` shows the key id only."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.keyid = key_id(self.public_key)
        self.public_key_pem = public_key_pem(self.public_key)

    def __repr__(self) -> str:
        return f"ReceiptSigner(keyid={self.keyid!r})"

    def sign(self, statement: Mapping[str, Any]) -> dict[str, Any]:
        """A DSSE envelope of ``statement`` (canonical JSON payload)."""
        payload = canonical_json(dict(statement))
        signature = self._key.sign(pae(PAYLOAD_TYPE, payload))
        return {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": self.keyid, "sig": base64.b64encode(signature).decode()}],
        }


# -- statements ---------------------------------------------------------------------------------


def subject_digest(digest: str) -> dict[str, str]:
    """``sha256:<hex>`` as an in-toto DigestSet: ``{"sha256": "<hex>"}``."""
    algorithm, _, encoded = digest.partition(":")
    return {algorithm: encoded}


def image_subject(release: Release) -> list[dict[str, Any]]:
    """The in-toto subject of every statement about a release: its image and digest."""
    return [{"name": f"{release.registry}/{release.repository}", "digest": subject_digest(release.digest)}]


def delivery_statement(
    release: Release,
    row: SiteSync,
    *,
    sequence: int,
    previous: str | None,
    window: Window | None,
    predicate_type: str = SITE_PREDICATE_TYPE,
    running: RunningSeen | None = None,
) -> dict[str, Any]:
    """The in-toto statement of one row's arrival (SYNCED or VERIFIED) at its site: receipt
    ``sequence`` of the site's chain (``predicate_type`` :data:`PREDICATE_TYPE` makes a receipt of
    the older per-release chain, for tests of that format). With ``running`` it is the receipt of
    the digest first seen running there instead (state :data:`RUNNING_STATE`, at that time, and by
    that source)."""
    if running is not None:
        statement = delivery_statement(release, row, sequence=sequence, previous=previous, window=window)
        statement["predicate"].update(
            state=RUNNING_STATE,
            observed_at=_iso(running.first_seen_at),
            evidence_source=running.evidence_source,
            running={"pods": running.pods, "workloads": list(running.workloads)},
        )
        return statement
    observed = arrival_time(row)
    return {
        "_type": STATEMENT_TYPE,
        "subject": image_subject(release),
        "predicateType": predicate_type,
        "predicate": {
            "site": row.site,
            "registry": release.registry,
            "repository": release.repository,
            "release_id": release.release_id,
            "state": row.state.value,
            "observed_at": _iso(observed),
            "evidence_source": row.evidence_source.value if row.evidence_source else None,
            "window": (
                {"opens": _iso(window.opens_at), "closes": _iso(window.closes_at)} if window is not None else None
            ),
            "sequence": sequence,
            "previous": previous,
        },
    }


# The state a receipt names when it attests that a digest runs at a site, not only that its registry holds it.
RUNNING_STATE = "RUNNING"


@dataclass(frozen=True)
class RunningSeen:
    """What a RUNNING receipt states beyond the row: when and by whom the digest was first seen
    running, and the pods and workloads (``namespace/kind/name``) that ran it."""

    first_seen_at: datetime
    evidence_source: str
    pods: int
    workloads: tuple[str, ...]


def arrival_time(row: SiteSync) -> datetime:
    """When the row's current state was observed: verified, else synced, else last updated."""
    return (row.verified_at if row.state is SyncState.VERIFIED else row.synced_at) or row.updated_at


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# -- verification -------------------------------------------------------------------------------


class ReceiptError(Exception):
    """A bundle that does not verify. ``receipt`` is the 1-based number of the first broken receipt
    (``None`` when the bundle itself is at fault); the message says which and why."""

    def __init__(self, message: str, *, receipt: int | None = None) -> None:
        super().__init__(message)
        self.receipt = receipt


class NotABundle(ReceiptError):
    """The document is not an evidence bundle at all (wrong media type, missing parts)."""


@dataclass(frozen=True)
class VerifiedBundle:
    """What a valid bundle proves: ``receipts`` receipts for the release, signed by ``keyid``.

    ``chains`` maps each site to the envelope digests of its receipts in order (per-site chains;
    empty for a bundle of one release chain); ``checkpoint`` is the moment the signed checkpoint
    describes (its ``as_of``) and ``heads`` the per-site heads it names, when the bundle has one."""

    release_id: str
    subject: str
    digest: str
    keyid: str
    receipts: int
    head: str | None
    sites: tuple[str, ...]
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    checkpoint: str | None = None
    heads: Mapping[str, tuple[str, int, str | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class ChainCheck:
    """One verified chain: how many receipts, the digest of each in order, and the sites they name."""

    digests: tuple[str, ...]
    sites: frozenset[str]

    @property
    def head(self) -> str | None:
        return self.digests[-1] if self.digests else None


@dataclass(frozen=True)
class _Opened:
    """One envelope, decoded as far as it goes (for the messages about its neighbours)."""

    envelope: Any
    statement: dict[str, Any] | None
    problem: str | None

    @property
    def sequence(self) -> int | None:
        predicate = (self.statement or {}).get("predicate")
        value = predicate.get("sequence") if isinstance(predicate, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def verify_legacy_bundle(bundle: Any, *, public_key: Ed25519PublicKey | None = None) -> VerifiedBundle:
    """Check a bundle of one release chain (:data:`LEGACY_BUNDLE_MEDIA_TYPE`), offline.

    ``public_key`` pins the expected key; without it the bundle's own ``public_key`` is used (which
    proves integrity, not origin). Receipt n must have sequence n, ``previous`` equal to the digest
    of receipt n-1 (null for the first), a valid signature by the expected key, and name the
    bundle's release; the last must match the release's chain head when the bundle states it. That
    head is not signed: such a bundle proves each receipt, not that none was cut from its end.

    Raises:
        NotABundle: not an evidence bundle.
        ReceiptError: the first thing that is wrong, naming the receipt.
    """
    release, receipts = bundle_parts(bundle, LEGACY_BUNDLE_MEDIA_TYPE)
    key = public_key or embedded_key(bundle)
    checked = verify_release_chain(receipts, key=key, release=release)
    _check_head(release, len(checked.digests), checked.head)
    return VerifiedBundle(
        release_id=release["id"],
        subject=f"{release['registry']}/{release['repository']}",
        digest=release["digest"],
        keyid=key_id(key),
        receipts=len(checked.digests),
        head=checked.head,
        sites=tuple(sorted(checked.sites)),
    )


def verify_release_chain(receipts: Sequence[Any], *, key: Ed25519PublicKey, release: Mapping[str, Any]) -> ChainCheck:
    """Check one per-release chain (:data:`PREDICATE_TYPE`): receipts 1..n of ``release``."""
    return verify_chain(receipts, key=key, release=release, predicate_type=PREDICATE_TYPE, site=None)


def verify_chain(
    receipts: Sequence[Any],
    *,
    key: Ed25519PublicKey,
    release: Mapping[str, Any],
    predicate_type: str,
    site: str | None,
) -> ChainCheck:
    """Check one chain: receipt n has sequence n, ``previous`` the digest of receipt n-1 (null for
    the first), a good signature by ``key``, the bundle's release as its subject and, for a site's
    chain, that site.

    Raises:
        ReceiptError: the first thing that is wrong, naming the receipt (and the site).
    """
    label = f"site {site}: " if site is not None else ""
    expected_keyid = key_id(key)
    subject = f"{release['registry']}/{release['repository']}"
    opened = [_open(envelope, predicate_type) for envelope in receipts]
    sequences = [item.sequence for item in opened]
    previous: str | None = None
    digests: list[str] = []
    sites: set[str] = set()
    for number, item in enumerate(opened, start=1):
        where = f"{label}receipt #{number}"
        if item.problem is not None or item.statement is None:
            raise ReceiptError(f"{where}: {item.problem}", receipt=number)
        check_signature(where, item.envelope, key, expected_keyid, receipt=number)
        statement = item.statement
        predicate = statement["predicate"]
        check_release(where, number, statement, release, subject)
        if site is not None and predicate["site"] != site:
            raise ReceiptError(
                f"{where}: it is about site {predicate['site']}, not {site}: a receipt moved between chains",
                receipt=number,
            )
        sequence = item.sequence
        if sequence != number:
            raise ReceiptError(label + _sequence_problem(number, sequence, sequences), receipt=number)
        if predicate["previous"] != previous:
            expected = f"{previous} (the digest of receipt #{number - 1})" if previous else "null (the first)"
            raise ReceiptError(
                f"{where}: broken chain: previous is {predicate['previous']}, expected {expected}", receipt=number
            )
        previous = envelope_digest(item.envelope)
        digests.append(previous)
        sites.add(str(predicate["site"]))
    return ChainCheck(tuple(digests), frozenset(sites))


def check_signature(
    where: str, envelope: Mapping[str, Any], key: Ed25519PublicKey, expected_keyid: str, *, receipt: int | None
) -> None:
    """The envelope's one signature is by ``key`` and covers its payload.

    Raises:
        ReceiptError: signed by another key, or the payload or signature changed after signing.
    """
    signature = envelope["signatures"][0]
    if signature["keyid"] != expected_keyid:
        raise ReceiptError(
            f"{where}: wrong key: signed by key {signature['keyid']}, not by the expected key {expected_keyid}",
            receipt=receipt,
        )
    try:
        key.verify(_b64(signature["sig"]), pae(envelope["payloadType"], _b64(envelope["payload"])))
    except (InvalidSignature, ValueError):
        raise ReceiptError(
            f"{where}: bad signature: the payload or the signature was changed after signing", receipt=receipt
        ) from None


def bundle_parts(bundle: Any, media_type: str) -> tuple[dict[str, Any], list[Any]]:
    """The release and the receipts list of a bundle of ``media_type``, checked for shape.

    Raises:
        NotABundle: another media type, or parts missing.
        ReceiptError: the release id is not the id of its registry, repository and digest.
    """
    if not isinstance(bundle, dict) or bundle.get("mediaType") != media_type:
        raise NotABundle(f"not an evidence bundle (mediaType is not {media_type})")
    release, receipts = bundle.get("release"), bundle.get("receipts")
    if not isinstance(receipts, list):
        raise NotABundle("not an evidence bundle: no receipts list")
    if not isinstance(release, dict) or not all(
        isinstance(release.get(name), str) for name in ("id", "registry", "repository", "digest")
    ):
        raise NotABundle("not an evidence bundle: the release needs id, registry, repository and digest")
    if release_id_for(release["registry"], release["repository"], release["digest"]) != release["id"]:
        raise ReceiptError(
            f"the bundle's release id {release['id']} is not the id of "
            f"{release['registry']}/{release['repository']}@{release['digest']}"
        )
    return release, receipts


def embedded_key(bundle: dict[str, Any]) -> Ed25519PublicKey:
    """The public key a bundle carries (integrity without origin).

    Raises:
        ReceiptError: none, unusable, or its keyid does not match it.
    """
    pem = bundle.get("public_key")
    if not isinstance(pem, str):
        raise ReceiptError("the bundle carries no public key: pass the signing key's PEM")
    try:
        key = load_public_key(pem)
    except ValueError as exc:
        raise ReceiptError(f"the bundle's public key is unusable: {exc}") from None
    if bundle.get("keyid") not in (None, key_id(key)):
        raise ReceiptError(f"the bundle's keyid {bundle.get('keyid')} is not the id of its public key {key_id(key)}")
    return key


def open_statement(
    envelope: Any, predicate_type: str, fields: Sequence[str]
) -> tuple[dict[str, Any] | None, str | None]:
    """The statement of a DSSE envelope with one signature, or why it is not one of ``predicate_type``
    with every one of ``fields`` in its predicate."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        return None, "not a DSSE envelope (no payload)"
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        return None, f"payloadType is {envelope.get('payloadType')!r}, not {PAYLOAD_TYPE}"
    signatures = envelope.get("signatures")
    if (
        not isinstance(signatures, list)
        or len(signatures) != 1
        or not isinstance(signatures[0], dict)
        or not isinstance(signatures[0].get("keyid"), str)
        or not isinstance(signatures[0].get("sig"), str)
    ):
        return None, "not a DSSE envelope with one {keyid, sig} signature"
    try:
        statement = json.loads(_b64(envelope["payload"]))
    except (ValueError, UnicodeDecodeError):
        return None, "edited payload: it is not base64 of a JSON statement"
    if (
        not isinstance(statement, dict)
        or statement.get("_type") != STATEMENT_TYPE
        or statement.get("predicateType") != predicate_type
        or not isinstance(statement.get("predicate"), dict)
        or not isinstance(statement.get("subject"), list)
        or any(name not in statement["predicate"] for name in fields)
    ):
        return None, None
    return statement, None


def _open(envelope: Any, predicate_type: str) -> _Opened:
    statement, problem = open_statement(envelope, predicate_type, _PREDICATE_FIELDS)
    if statement is None:
        return _Opened(envelope, None, problem or _not_a_receipt(envelope, predicate_type))
    return _Opened(envelope, statement, None)


def _not_a_receipt(envelope: dict[str, Any], predicate_type: str) -> str:
    try:
        found = json.loads(_b64(envelope["payload"])).get("predicateType")
    except (ValueError, UnicodeDecodeError, AttributeError):
        found = None
    if predicate_type == SITE_PREDICATE_TYPE and found == PREDICATE_TYPE:
        return "a receipt of the per-release chain among the per-site chains"
    if predicate_type == PREDICATE_TYPE and found == SITE_PREDICATE_TYPE:
        return "a receipt of a per-site chain among the per-release chain"
    return "the payload is not an acrsync delivery-receipt statement"


def check_release(
    where: str, number: int | None, statement: dict[str, Any], release: Mapping[str, Any], subject: str
) -> None:
    predicate = statement["predicate"]
    subjects = statement["subject"]
    names = [(s.get("name"), s.get("digest")) for s in subjects if isinstance(s, dict)]
    expected = (subject, subject_digest(release["digest"]))
    if predicate["release_id"] != release["id"] or names != [expected]:
        named = names[0] if names else ("?", {})
        digest = ":".join(next(iter(named[1].items()), ("?", "?"))) if isinstance(named[1], dict) else "?"
        raise ReceiptError(
            f"{where}: wrong release: it is about {named[0]}@{digest} (release {predicate['release_id']}), "
            f"not {subject}@{release['digest']} (release {release['id']})",
            receipt=number,
        )


def _sequence_problem(number: int, sequence: int | None, sequences: Sequence[int | None]) -> str:
    found = f"#{sequence}" if sequence is not None else "a receipt without a sequence number"
    if sequence is not None and sequence < number and sequence in sequences[: number - 1]:
        return f"receipt #{number}: duplicate: position {number} holds {found} again"
    if number in sequences:
        return f"receipt #{number} is out of order: position {number} holds {found}, #{number} comes later"
    return f"receipt #{number} is missing: position {number} holds {found}"


def _check_head(release: dict[str, Any], count: int, last: str | None) -> None:
    chain = release.get("receipts")
    if not isinstance(chain, dict):
        return  # an older bundle without the chain head: the chain itself was checked
    sequence, head = chain.get("sequence"), chain.get("head")
    if isinstance(sequence, int) and sequence > count:
        raise ReceiptError(
            f"receipt #{count + 1} is missing: the release's chain head is receipt #{sequence}", receipt=count + 1
        )
    if isinstance(sequence, int) and sequence < count:
        raise ReceiptError(
            f"receipt #{sequence + 1}: beyond the release's chain head (receipt #{sequence})", receipt=sequence + 1
        )
    if head != last:
        raise ReceiptError(
            f"receipt #{count}: its digest {last} is not the release's chain head {head}", receipt=count or None
        )


def _b64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)
