"""Signed delivery receipts: the statement, DSSE's PAE, Ed25519 signing, the per-release chain of
releases written before receipts chained per site (its bundles still verify), and offline
verification that names the first broken receipt and why. Also the key handling around it:
the setting, the local key file, and the composition root's lazily built signer."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import os
import stat
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import bootstrap as bootstrap_module
from shared.adapters.codec import release_from_doc, release_to_doc
from shared.adapters.signing_key import load_or_create_key
from shared.bootstrap import bootstrap
from shared.config import Settings
from shared.domain.evidence_bundles import verify_bundle
from shared.domain.model import Release
from shared.domain.receipts import (
    BUNDLE_MEDIA_TYPE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    NotABundle,
    ReceiptError,
    ReceiptSigner,
    delivery_statement,
    envelope_digest,
    key_id,
    load_private_key,
    load_public_key,
    pae,
)
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.domain.windows import Window
from shared.errors import ConfigurationError
from tests.builders import T0, make_release, make_row

SEED = bytes(range(32))


@pytest.fixture
def signer() -> ReceiptSigner:
    return ReceiptSigner(Ed25519PrivateKey.from_private_bytes(SEED))


def arrived(release: Release, site: str, *, verified: bool = False, minutes: int = 5) -> Any:
    at = T0 + timedelta(minutes=minutes)
    row = make_row(release, site)
    if verified:
        return row.moved_to(
            SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, at, evidence_source=EvidenceSource.OCI_PROBE
        )
    return row.moved_to(
        SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at, evidence_source=EvidenceSource.ARM_LAST_SYNC
    )


def legacy_statement(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """A receipt of the per-release chain, as releases written before per-site chains hold."""
    return delivery_statement(*args, predicate_type=PREDICATE_TYPE, **kwargs)


def chain(signer: ReceiptSigner, release: Release, sites: list[str]) -> list[dict[str, Any]]:
    """Receipts 1..n as the services sign them: each names the digest of the one before."""
    envelopes: list[dict[str, Any]] = []
    previous = None
    for number, site in enumerate(sites, start=1):
        statement = legacy_statement(
            release, arrived(release, site, minutes=number), sequence=number, previous=previous, window=None
        )
        envelope = signer.sign(statement)
        envelopes.append(envelope)
        previous = envelope_digest(envelope)
    return envelopes


def bundle_of(signer: ReceiptSigner, release: Release, receipts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "release": {
            "id": release.release_id,
            "registry": release.registry,
            "repository": release.repository,
            "digest": release.digest,
            "receipts": {"sequence": len(receipts), "head": envelope_digest(receipts[-1]) if receipts else None},
        },
        "keyid": signer.keyid,
        "public_key": signer.public_key_pem,
        "receipts": receipts,
    }


@pytest.fixture
def release() -> Release:
    return make_release()


@pytest.fixture
def bundle(signer: ReceiptSigner, release: Release) -> dict[str, Any]:
    return bundle_of(signer, release, chain(signer, release, ["plant-01", "plant-02", "plant-03"]))


def payload_of(envelope: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope["payload"]))  # type: ignore[no-any-return]


def fails(bundle: dict[str, Any], message: str, *, receipt: int | None, **kw: Any) -> None:
    with pytest.raises(ReceiptError) as raised:
        verify_bundle(bundle, **kw)
    assert str(raised.value) == message
    assert raised.value.receipt == receipt


# -- statement, PAE, envelope ---------------------------------------------------------------------


def test_the_statement_is_an_in_toto_v1_delivery_receipt(release: Release) -> None:
    row = arrived(release, "plant-01", verified=True)
    window = Window(T0, T0 + timedelta(hours=3))
    statement = legacy_statement(release, row, sequence=4, previous="ab" * 32, window=window)
    assert statement == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "contosoacr.azurecr.io/inspection/camera", "digest": {"sha256": release.digest[7:]}}],
        "predicateType": "https://acrsync.dev/delivery-receipt/v1",
        "predicate": {
            "site": "plant-01",
            "registry": "contosoacr.azurecr.io",
            "repository": "inspection/camera",
            "release_id": release.release_id,
            "state": "VERIFIED",
            "observed_at": "2026-11-24T09:46:12Z",
            "evidence_source": "oci-probe",
            "window": {"opens": "2026-11-24T09:41:12Z", "closes": "2026-11-24T12:41:12Z"},
            "sequence": 4,
            "previous": "ab" * 32,
        },
    }
    first = legacy_statement(release, arrived(release, "plant-02"), sequence=1, previous=None, window=None)
    assert first["predicate"]["window"] is None and first["predicate"]["previous"] is None
    assert first["predicate"]["state"] == "SYNCED" and first["predicate"]["evidence_source"] == "arm-last-sync"


def test_pae_is_the_dsse_v1_encoding() -> None:
    # The example of the DSSE protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae(PAYLOAD_TYPE, b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 " + "é".encode()  # lengths count bytes


def test_an_envelope_signs_the_pae_of_the_canonical_statement(signer: ReceiptSigner, release: Release) -> None:
    statement = legacy_statement(release, arrived(release, "plant-01"), sequence=1, previous=None, window=None)
    envelope = signer.sign(statement)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(envelope["payload"])
    assert payload == json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    [signature] = envelope["signatures"]
    assert signature["keyid"] == signer.keyid
    signer.public_key.verify(base64.b64decode(signature["sig"]), pae(PAYLOAD_TYPE, payload))  # raises if wrong
    canonical = json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()
    assert envelope_digest(envelope) == hashlib.sha256(canonical).hexdigest()


def test_the_key_id_is_the_sha256_of_the_raw_public_key(signer: ReceiptSigner) -> None:
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.keyid == hashlib.sha256(raw).hexdigest() == key_id(load_public_key(signer.public_key_pem))
    assert signer.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert repr(signer) == f"ReceiptSigner(keyid={signer.keyid!r})"


def test_private_keys_load_from_pem_or_base64_raw_bytes(signer: ReceiptSigner) -> None:
    pem = Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for text in (pem.decode(), pem, base64.b64encode(SEED).decode(), "  " + base64.b64encode(SEED).decode() + "\n"):
        assert key_id(load_private_key(text).public_key()) == signer.keyid
    secret = base64.b64encode(SEED[:31]).decode()
    for bad in (
        secret,
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        signer.public_key_pem,
    ):
        with pytest.raises(ValueError) as raised:
            load_private_key(bad)
        assert secret not in str(raised.value) and "AAAA" not in str(raised.value)


# -- verification ---------------------------------------------------------------------------------


def test_a_valid_bundle_verifies(signer: ReceiptSigner, release: Release, bundle: dict[str, Any]) -> None:
    result = verify_bundle(bundle)
    assert result.receipts == 3 and result.keyid == signer.keyid and result.release_id == release.release_id
    assert result.head == envelope_digest(bundle["receipts"][-1])
    assert result.sites == ("plant-01", "plant-02", "plant-03")
    pinned = verify_bundle(bundle, public_key=signer.public_key)
    assert pinned == result
    empty = bundle_of(signer, release, [])
    assert verify_bundle(empty).receipts == 0 and verify_bundle(empty).head is None


def test_an_edited_payload_is_a_bad_signature(bundle: dict[str, Any]) -> None:
    envelope = bundle["receipts"][1]
    edited = base64.b64decode(envelope["payload"]).replace(b'"plant-02"', b'"plant-09"')
    envelope["payload"] = base64.b64encode(edited).decode()
    fails(
        bundle,
        "receipt #2: bad signature: the payload or the signature was changed after signing",
        receipt=2,
    )


def test_a_payload_that_no_longer_decodes_is_named_as_edited(bundle: dict[str, Any]) -> None:
    bundle["receipts"][2]["payload"] = "A" + bundle["receipts"][2]["payload"][1:]  # "{" is no longer the first byte
    fails(bundle, "receipt #3: edited payload: it is not base64 of a JSON statement", receipt=3)


def test_an_altered_signature_is_a_bad_signature(bundle: dict[str, Any]) -> None:
    signature = bundle["receipts"][0]["signatures"][0]
    raw = bytearray(base64.b64decode(signature["sig"]))
    raw[10] ^= 0x01
    signature["sig"] = base64.b64encode(bytes(raw)).decode()
    fails(bundle, "receipt #1: bad signature: the payload or the signature was changed after signing", receipt=1)


def test_a_dropped_receipt_is_missing(bundle: dict[str, Any]) -> None:
    del bundle["receipts"][1]
    fails(bundle, "receipt #2 is missing: position 2 holds #3", receipt=2)


def test_a_dropped_last_receipt_is_missing_against_the_chain_head(bundle: dict[str, Any]) -> None:
    del bundle["receipts"][2]
    fails(bundle, "receipt #3 is missing: the release's chain head is receipt #3", receipt=3)


def test_reordered_receipts_are_out_of_order(bundle: dict[str, Any]) -> None:
    receipts = bundle["receipts"]
    receipts[1], receipts[2] = receipts[2], receipts[1]
    fails(bundle, "receipt #2 is out of order: position 2 holds #3, #2 comes later", receipt=2)


def test_a_repeated_receipt_is_a_duplicate(bundle: dict[str, Any]) -> None:
    bundle["receipts"][2] = copy.deepcopy(bundle["receipts"][1])
    fails(bundle, "receipt #3: duplicate: position 3 holds #2 again", receipt=3)


def test_a_receipt_of_another_release_is_refused(
    signer: ReceiptSigner, release: Release, bundle: dict[str, Any]
) -> None:
    other = make_release("inspection/model-runtime")
    # Signed by the right key, with the right number and even the right `previous`: only its
    # subject gives it away.
    statement = legacy_statement(
        other,
        arrived(other, "plant-02"),
        sequence=2,
        previous=envelope_digest(bundle["receipts"][0]),
        window=None,
    )
    bundle["receipts"][1] = signer.sign(statement)
    fails(
        bundle,
        f"receipt #2: wrong release: it is about contosoacr.azurecr.io/inspection/model-runtime@{other.digest} "
        f"(release {other.release_id}), not contosoacr.azurecr.io/inspection/camera@{release.digest} "
        f"(release {release.release_id})",
        receipt=2,
    )


def test_a_broken_link_is_named(signer: ReceiptSigner, release: Release, bundle: dict[str, Any]) -> None:
    statement = legacy_statement(release, arrived(release, "plant-02"), sequence=2, previous="00" * 32, window=None)
    bundle["receipts"][1] = signer.sign(statement)
    head = envelope_digest(bundle["receipts"][0])
    fails(
        bundle,
        f"receipt #2: broken chain: previous is {'00' * 32}, expected {head} (the digest of receipt #1)",
        receipt=2,
    )


def test_receipts_signed_by_another_key_are_refused(signer: ReceiptSigner, release: Release) -> None:
    intruder = ReceiptSigner(Ed25519PrivateKey.from_private_bytes(bytes(reversed(SEED))))
    forged = bundle_of(intruder, release, chain(intruder, release, ["plant-01", "plant-02"]))
    verify_bundle(forged)  # consistent in itself ...
    fails(  # ... but not by the key the verifier trusts
        forged,
        f"receipt #1: wrong key: signed by key {intruder.keyid}, not by the expected key {signer.keyid}",
        receipt=1,
        public_key=signer.public_key,
    )
    # A forger claiming the right key id still cannot produce the right signature.
    for envelope in forged["receipts"]:
        envelope["signatures"][0]["keyid"] = signer.keyid
    fails(
        forged,
        "receipt #1: bad signature: the payload or the signature was changed after signing",
        receipt=1,
        public_key=signer.public_key,
    )


def test_the_bundle_itself_is_checked(signer: ReceiptSigner, bundle: dict[str, Any]) -> None:
    with pytest.raises(NotABundle, match="mediaType"):
        verify_bundle({**bundle, "mediaType": "application/json"})
    with pytest.raises(NotABundle, match="receipts"):
        verify_bundle({**bundle, "receipts": None})
    with pytest.raises(NotABundle, match="needs id"):
        verify_bundle({**bundle, "release": {"id": "x"}})
    edited = copy.deepcopy(bundle)
    edited["release"]["digest"] = "sha256:" + "0" * 64
    with pytest.raises(ReceiptError, match="is not the id of"):
        verify_bundle(edited)
    with pytest.raises(ReceiptError, match="no public key"):
        verify_bundle({**bundle, "public_key": None})
    with pytest.raises(ReceiptError, match="is not the id of its public key"):
        verify_bundle({**bundle, "keyid": "0" * 64})
    assert verify_bundle({**bundle, "public_key": None}, public_key=signer.public_key).receipts == 3


# -- keys: the setting, the local key file, the composition root ----------------------------------


def test_the_signing_key_setting_is_checked_and_never_shown(signer: ReceiptSigner) -> None:
    secret = base64.b64encode(SEED).decode()
    settings = Settings.from_environ({"ACRSYNC_SIGNING_KEY": secret})
    assert settings.signing_key == secret and secret not in repr(settings)
    assert secret not in json.dumps(settings.describe())
    assert bootstrap(settings).signer.keyid == signer.keyid  # type: ignore[union-attr]
    for raw, message in (
        ("bm90IGEga2V5", "must be an Ed25519 private key"),
        ("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/acrsync-signing-key/)", "did not resolve"),
    ):
        with pytest.raises(ConfigurationError, match=message) as raised:
            Settings.from_environ({"ACRSYNC_SIGNING_KEY": raw})
        assert "ACRSYNC_SIGNING_KEY" in str(raised.value) and "bm90IGEga2V5" not in str(raised.value)


def test_the_local_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "signing-key.pem"
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(key_id(load_or_create_key(path).public_key()))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys) == 8
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["signing-key.pem"]  # no temporary file left
    assert key_id(load_or_create_key(path).public_key()) == keys[0]
    path.write_text("garbage")
    with pytest.raises(ConfigurationError, match="is not an Ed25519 private key"):
        load_or_create_key(path)


def test_local_services_keep_their_key_in_the_data_dir(tmp_path: Path) -> None:
    first = bootstrap(Settings(data_dir=tmp_path))
    assert not (tmp_path / "signing-key.pem").exists()  # built lazily, on first use
    keyid = first.signer.keyid  # type: ignore[union-attr]
    assert (tmp_path / "signing-key.pem").exists()
    assert bootstrap(Settings(data_dir=tmp_path)).signer.keyid == keyid  # type: ignore[union-attr]


def test_in_azure_without_a_key_receipts_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap_module, "_unsigned_warned", threading.Event())
    with caplog.at_level(logging.WARNING, logger="shared.bootstrap"):
        assert bootstrap(Settings(data_dir=tmp_path, in_azure=True)).signer is None
        assert bootstrap(Settings(data_dir=tmp_path, in_azure=True)).signer is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["ACRSYNC_SIGNING_KEY is not set: delivery receipts are not signed or recorded"]
    assert list(tmp_path.iterdir()) == []  # no key is made up in Azure


def test_the_chain_head_round_trips_and_old_headers_start_a_new_chain(release: Release) -> None:
    from dataclasses import replace

    headed = replace(release, receipt_sequence=7, receipt_head="cd" * 32)
    assert release_from_doc(release_to_doc(headed)) == headed
    old = release_to_doc(release)
    del old["receipt_sequence"], old["receipt_head"]
    restored = release_from_doc(old)
    assert restored.receipt_sequence == 0 and restored.receipt_head is None
