"""Signed delivery receipts end to end, on every store backend: the site check and edge events sign
each arrival in the same conditional write as the row, into the site's own chain; site checks
write nothing shared with the other sites of the release; chains stay exact with eight workers and
concurrent edge events on one release; the release summary signs a checkpoint; the API serves a
bundle and the public key, and the CLI verifies the bundle offline, refuses every kind of
tampering by name, and checks a later bundle against an earlier one."""

from __future__ import annotations

import base64
import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from shared.adapters.oci import StaticSiteCredentials
from shared.adapters.outbox import SqliteOutbox
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap, use_services
from shared.cli import main
from shared.config import Settings
from shared.domain.evidence_bundles import verify_bundle
from shared.domain.model import Site
from shared.domain.observations import (
    BasicCredentials,
    ConnectedRegistryState,
    ConnectionState,
    ManifestObservation,
    ProbeOutcome,
    SyncScope,
)
from shared.domain.receipts import ReceiptSigner, canonical_json, envelope_digest
from shared.domain.states import READY_STATES, SyncState
from shared.errors import UpstreamUnavailable
from shared.local.runtime import LocalRuntime
from shared.ports import StateStore
from shared.services.bundles import evidence_bundle
from shared.services.ingest import ingest_delivery
from shared.services.receipts import RECEIPT_DETAIL, SEQUENCE_DETAIL
from shared.services.summaries import CLOCK_MARGIN, SUMMARY_INTERVAL
from tests.fakes import FakeArmReader, FakeClock, delivery, load_event
from tests.support.server import serve

asgi_app = create_app()

SUB = "/subscriptions/6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43/resourceGroups/rg-contoso-registry"
REG = f"{SUB}/providers/Microsoft.ContainerRegistry/registries/contosoacr"
PUSHED_AT = datetime.fromisoformat("2026-11-24T09:41:12.4189245Z")
NOW = PUSHED_AT + timedelta(seconds=30)
SUBJECT = "contosoacr.azurecr.io/inspection/camera"


def synced_arm(out_of_scope: frozenset[str] = frozenset()) -> FakeArmReader:
    """ARM as the site check reads it: every connected registry online and synced after the push;
    the scope map covers ``inspection/*`` unless a site is listed in ``out_of_scope``."""

    def state(resource_id: str) -> ConnectedRegistryState:
        name = resource_id.rsplit("/", 1)[-1]
        return ConnectedRegistryState(
            resource_id=resource_id,
            name=name,
            connection_state=ConnectionState.ONLINE,
            observed_at=NOW,
            last_activity_time=NOW,
            last_sync_time=PUSHED_AT + timedelta(seconds=10),
            token_id=f"{REG}/tokens/{name}",
        )

    def scope(token_id: str) -> SyncScope:
        name = token_id.rsplit("/", 1)[-1]
        patterns = ("retail/*",) if name in out_of_scope else ("inspection/*",)
        return SyncScope(token_id=token_id, token_enabled=True, repository_patterns=patterns)

    return FakeArmReader(state, scope=scope)


class FakeProbe:
    """A site registry that holds the manifest at the endpoints in ``present``; others are unreachable."""

    def __init__(self, present: set[str]) -> None:
        self.present = present

    def probe(
        self, endpoint: str, repository: str, digest: str, *, credentials: BasicCredentials | None = None
    ) -> ManifestObservation:
        if endpoint not in self.present:
            raise UpstreamUnavailable("injected: the site is outside its window")
        return ManifestObservation(ProbeOutcome.PRESENT, 200, NOW, endpoint, digest)


def site(name: str, **kw: Any) -> Site:
    return Site(
        name=name,
        repositories=("inspection/*",),
        connected_registry=f"{REG}/connectedRegistries/{name}",
        endpoint=f"https://{name}.example",
        **kw,
    )


@pytest.fixture
def signer() -> ReceiptSigner:
    return ReceiptSigner(Ed25519PrivateKey.generate())


Wire = Callable[..., Services]


@pytest.fixture
def wire(store: StateStore, tmp_path: Path, signer: ReceiptSigner) -> Iterator[Wire]:
    built: list[Services] = []

    def make(*, present: set[str] | None = None, out_of_scope: frozenset[str] = frozenset(), **kw: Any) -> Services:
        clock = FakeClock(NOW)
        services = bootstrap(
            kw.pop("settings", None) or Settings(data_dir=tmp_path),
            store=store,
            queue=SqliteJobQueue(tmp_path / "queue.db", clock=clock.now),
            clock=clock,
            arm=synced_arm(out_of_scope),
            probe=FakeProbe(present or set()),
            credentials=StaticSiteCredentials({}),
            events=SqliteOutbox(tmp_path / "outbox.db"),
            **({"signer": signer} | kw),
        )
        built.append(services)
        return services

    yield make
    use_services(None)
    for services in built:
        services.queue.close()  # type: ignore[attr-defined]
        services.events.close()  # type: ignore[attr-defined]


def push(services: Services, *, digest: str | None = None) -> str:
    event = copy.deepcopy(load_event("eventgrid-image-pushed"))
    event["eventTime"] = PUSHED_AT.isoformat()
    if digest is not None:
        event["id"] = str(uuid.uuid4())
        event["data"]["target"]["digest"] = digest
    [result] = ingest_delivery(services, delivery(event), "application/json").results
    assert result.release_id is not None
    return result.release_id


def edge(services: Services, name: str) -> None:
    event = copy.deepcopy(load_event("eventgrid-connected-registry-image-pushed"))
    event["id"] = str(uuid.uuid4())
    event["data"]["connectedregistry"]["name"] = name
    event["topic"] = event["topic"].replace("plant-01", name)
    clock = services.clock
    assert isinstance(clock, FakeClock)
    # The event arrives after it happened (a later time would be taken as the arrival's).
    clock.current = max(clock.current, datetime.fromisoformat(event["eventTime"]) + timedelta(seconds=5))
    ingest_delivery(services, delivery(event), "application/json")


def run_jobs(services: Services, workers: int = 1, *, summaries: bool = True) -> None:
    """Every visible job; then (``summaries``) the release summaries the changes scheduled, which
    are due at the end of their interval."""
    _drain(services, workers)
    if summaries:
        clock = services.clock
        assert isinstance(clock, FakeClock)
        clock.advance(seconds=(SUMMARY_INTERVAL + CLOCK_MARGIN).total_seconds())
        _drain(services, 1)


def _drain(services: Services, workers: int) -> None:
    runtime = LocalRuntime(services)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while batch := services.queue.receive_messages(max_count=1):
                for message in batch:
                    runtime.handle_job(message)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def receipts_in_store(services: Services, release_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every stored receipt by (site, sequence)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for record in services.store.list_evidence(release_id):
        if RECEIPT_DETAIL in record.details:
            key = (record.site, int(record.details[SEQUENCE_DETAIL]))
            assert key not in found, f"two receipts {key}"
            found[key] = {"record": record, "envelope": json.loads(record.details[RECEIPT_DETAIL])}
    return found


def predicate(envelope: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope["payload"]))["predicate"]  # type: ignore[no-any-return]


# -- signing on arrival ---------------------------------------------------------------------------


def test_each_arrival_is_signed_into_the_sites_own_chain_with_the_row(wire: Wire, signer: ReceiptSigner) -> None:
    services = wire(out_of_scope=frozenset({"plant-02"}))
    services.store.upsert_sites(
        [
            # syncs daily 09:00-12:00 UTC: the check at 09:41 falls in the window open since 09:00
            site("plant-01", schedule="0 9 * * *", sync_window=timedelta(hours=3)),
            site("plant-02"),  # its scope map leaves the repository out: FAILED, no receipt
            site("plant-03", schedule="0 9 * * *", sync_window=timedelta(hours=3)),
        ]
    )
    release_id = push(services)
    header_before = services.store.get_release(release_id)
    run_jobs(services, summaries=False)
    # Three sites changed state, and none of them wrote the release header: they share nothing.
    assert services.store.get_release(release_id).etag == header_before.etag
    row = services.store.get_site_sync(release_id, "plant-01").value
    assert row.state is SyncState.SYNCED
    assert services.store.get_site_sync(release_id, "plant-02").value.state is SyncState.FAILED
    receipts = receipts_in_store(services, release_id)
    assert sorted(receipts) == [("plant-01", 1), ("plant-03", 1)]  # each site's chain starts at 1
    first = receipts[("plant-01", 1)]
    assert row.receipt_sequence == 1 and row.receipt_head == envelope_digest(first["envelope"])
    # The receipt rides on the evidence record of the transition it attests.
    record = first["record"]
    assert (record.site, record.state_from, record.state_to) == ("plant-01", SyncState.PENDING, SyncState.SYNCED)
    statement = json.loads(base64.b64decode(first["envelope"]["payload"]))
    assert statement["predicateType"] == "https://acrsync.dev/delivery-receipt/v2"
    assert statement["predicate"] == {
        "site": "plant-01",
        "registry": "contosoacr.azurecr.io",
        "repository": "inspection/camera",
        "release_id": release_id,
        "state": "SYNCED",
        # when the digest reached the site: the sync ARM reports, not the moment the check looked
        "observed_at": (PUSHED_AT + timedelta(seconds=10)).isoformat().replace("+00:00", "Z"),
        "evidence_source": "arm-last-sync",
        "window": {"opens": "2026-11-24T09:00:00Z", "closes": "2026-11-24T12:00:00Z"},
        "sequence": 1,
        "previous": None,
    }
    assert all(RECEIPT_DETAIL not in e.details for e in services.store.list_evidence(release_id, site="plant-02"))

    edge(services, "plant-01")  # the connected registry's own event: SYNCED -> VERIFIED, receipt #2 of plant-01
    edge(services, "plant-01")  # late proof again: evidence, but no transition and no receipt
    receipts = receipts_in_store(services, release_id)
    assert sorted(receipts) == [("plant-01", 1), ("plant-01", 2), ("plant-03", 1)]
    second = predicate(receipts[("plant-01", 2)]["envelope"])
    assert second["state"] == "VERIFIED" and second["evidence_source"] == "connected-registry-event"
    assert second["previous"] == envelope_digest(receipts[("plant-01", 1)]["envelope"])
    assert second["window"] is None  # 22:07 is outside the 09:00-12:00 window

    run_jobs(services)  # the summaries the changes scheduled
    header = services.store.get_release(release_id).value
    assert header.counts == {SyncState.VERIFIED: 1, SyncState.FAILED: 1, SyncState.SYNCED: 1}
    assert header.counts_as_of is not None and header.checkpoint is not None
    bundle = evidence_bundle(services, release_id)
    assert [envelope_digest(e) for e in bundle["receipts"]] == [
        envelope_digest(receipts[key]["envelope"]) for key in sorted(receipts)
    ]
    verified = verify_bundle(bundle, public_key=signer.public_key)
    assert verified.receipts == 3 and verified.sites == ("plant-01", "plant-03")
    assert verified.heads == {
        "plant-01": ("VERIFIED", 2, envelope_digest(receipts[("plant-01", 2)]["envelope"])),
        "plant-02": ("FAILED", 0, None),  # in scope, never arrived: the checkpoint says so too
        "plant-03": ("SYNCED", 1, envelope_digest(receipts[("plant-03", 1)]["envelope"])),
    }
    # The checkpoint the summary stored is the one the bundle carries: same state, same bytes.
    assert header.checkpoint == canonical_json(bundle["checkpoint"]["envelope"]).decode()


def test_eight_workers_and_edge_events_on_one_release_keep_every_site_chain_exact(
    wire: Wire, signer: ReceiptSigner
) -> None:
    names = [f"store-{i:04d}" for i in range(48)]
    # Even sites answer the manifest check (VERIFIED at once); odd ones are inferred SYNCED from ARM,
    # while their edge events race the workers and move them to VERIFIED.
    services = wire(present={f"https://{n}.example" for n in names[::2]})
    services.store.upsert_sites([site(name) for name in names])
    release_id = push(services)
    errors: list[BaseException] = []

    def send_edges(batch: list[str]) -> None:
        try:
            for name in batch:
                edge(services, name)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    odd = names[1::2]
    senders = [threading.Thread(target=send_edges, args=(odd[i::4],)) for i in range(4)]
    for thread in senders:
        thread.start()
    run_jobs(services, workers=8)
    for thread in senders:
        thread.join()
    assert errors == []
    run_jobs(services)
    # Nothing lost a race it could not win: no job was given up on (on Table Storage too).
    assert services.queue.count(dead_letter=True) == 0  # type: ignore[attr-defined]

    rows = {v.value.site: v.value for v in services.store.list_site_syncs(release_id)}
    assert {row.state for row in rows.values()} == {SyncState.VERIFIED}
    assert services.store.get_release(release_id).value.counts == {SyncState.VERIFIED: 48}
    # One receipt per move into SYNCED or VERIFIED, numbered 1..n per site without gaps or repeats.
    stored = receipts_in_store(services, release_id)
    arrivals = [
        e
        for e in services.store.list_evidence(release_id)
        if e.state_to in READY_STATES and e.state_from is not e.state_to
    ]
    assert all(RECEIPT_DETAIL in e.details for e in arrivals) and len(arrivals) == len(stored)
    for name, row in rows.items():
        chain = [stored[(name, n)] for n in range(1, row.receipt_sequence + 1)]
        assert len([key for key in stored if key[0] == name]) == row.receipt_sequence in (1, 2)
        assert [predicate(item["envelope"])["previous"] for item in chain] == [
            None,
            *[envelope_digest(item["envelope"]) for item in chain[:-1]],
        ]
        assert row.receipt_head == envelope_digest(chain[-1]["envelope"])
    result = verify_bundle(evidence_bundle(services, release_id), public_key=signer.public_key)
    assert result.receipts == len(stored) and result.sites == tuple(names)


def test_without_a_key_in_azure_rows_move_and_nothing_is_signed(wire: Wire, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, in_azure=True)  # no ACRSYNC_SIGNING_KEY
    services = wire(present={"https://plant-01.example"}, settings=settings, signer=None)
    assert services.signer is None
    services.store.upsert_sites([site("plant-01")])
    release_id = push(services)
    run_jobs(services)
    assert services.store.get_site_sync(release_id, "plant-01").value.state is SyncState.VERIFIED
    assert services.store.get_release(release_id).value.counts == {SyncState.VERIFIED: 1}
    assert services.store.get_release(release_id).value.checkpoint is None
    assert receipts_in_store(services, release_id) == {}
    use_services(services)
    client = TestClient(asgi_app)
    answer = client.get("/api/signing-key")
    assert answer.status_code == 404 and answer.json()["code"] == "SIGNING_KEY_NOT_CONFIGURED"
    answer = client.get(f"/api/releases/{release_id}/evidence", params={"format": "bundle"})
    assert answer.status_code == 404 and answer.json()["code"] == "SIGNING_KEY_NOT_CONFIGURED"


# -- the API and the CLI --------------------------------------------------------------------------


@pytest.fixture
def signed(wire: Wire) -> tuple[Services, str]:
    """A release with four receipts in three chains: plant-01 and plant-02 VERIFIED at once (one
    receipt each), plant-03 SYNCED then VERIFIED by its edge event (two)."""
    services = wire(present={"https://plant-01.example", "https://plant-02.example"})
    services.store.upsert_sites([site("plant-01"), site("plant-02"), site("plant-03")])
    release_id = push(services)
    run_jobs(services)
    edge(services, "plant-03")
    run_jobs(services)
    use_services(services)
    assert [v.value.receipt_sequence for v in services.store.list_site_syncs(release_id)] == [1, 1, 2]
    return services, release_id


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fetch_bundle(release_id: str) -> dict[str, Any]:
    answer = TestClient(asgi_app).get(f"/api/releases/{release_id}/evidence", params={"format": "bundle"})
    assert answer.status_code == 200 and answer.headers["etag"], answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_the_api_bundle_verifies_with_the_cli(
    signed: tuple[Services, str], signer: ReceiptSigner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, release_id = signed
    client = TestClient(asgi_app)
    answer = client.get(f"/api/releases/{release_id}/evidence", params={"format": "bundle"})
    bundle = answer.json()
    assert bundle["mediaType"] == "application/vnd.acrsync.evidence-bundle.v2+json"
    assert bundle["release"]["id"] == release_id and bundle["release"]["counts"] == {"VERIFIED": 3}
    assert bundle["keyid"] == signer.keyid and bundle["public_key"] == signer.public_key_pem
    assert [(predicate(e)["site"], predicate(e)["sequence"]) for e in bundle["receipts"]] == [
        ("plant-01", 1),
        ("plant-02", 1),
        ("plant-03", 1),
        ("plant-03", 2),
    ]
    assert [(s["site"], s["state"], s["sequence"]) for s in bundle["checkpoint"]["sites"]] == [
        ("plant-01", "VERIFIED", 1),
        ("plant-02", "VERIFIED", 1),
        ("plant-03", "VERIFIED", 2),
    ]
    # Nothing changed, so the next answer is byte-identical and a conditional GET is a 304.
    again = client.get(
        f"/api/releases/{release_id}/evidence",
        params={"format": "bundle"},
        headers={"If-None-Match": answer.headers["etag"]},
    )
    assert again.status_code == 304
    key = client.get("/api/signing-key").json()
    assert key == {"keyid": signer.keyid, "algorithm": "ed25519", "public_key": signer.public_key_pem}
    refused = client.get(f"/api/releases/{release_id}/evidence", params={"format": "bundle", "site": "plant-01"})
    assert refused.status_code == 400 and refused.json()["code"] == "CONFLICTING_SELECTION"

    pem = tmp_path / "signing-key.pub.pem"
    pem.write_text(key["public_key"])
    good = tmp_path / "bundle.json"
    good.write_text(json.dumps(bundle))
    code, out, _ = cli(capsys, "receipts", "verify", str(good), "--public-key", str(pem))
    assert code == 0, out
    statement = json.loads(base64.b64decode(bundle["checkpoint"]["envelope"]["payload"]))
    assert out.splitlines() == [
        f"OK: 4 signed receipt(s) for {SUBJECT}@{bundle['release']['digest']} (release {release_id}), "
        f"3 site(s) in the checkpoint as of {statement['predicate']['as_of']} (root {statement['predicate']['root']}), "
        f"key {signer.keyid}",
        "sites: plant-01, plant-02, plant-03",
    ]
    code, _, err = cli(capsys, "receipts", "verify", str(good))
    assert code == 0 and "pass --public-key to pin the signer" in err

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli(capsys, "receipts", "verify", str(bad))[0] == 3
    assert cli(capsys, "receipts", "verify", str(tmp_path / "missing.json"))[0] == 3
    bad.write_text(json.dumps({"value": []}))
    code, _, err = cli(capsys, "receipts", "verify", str(bad))
    assert code == 3 and "not an evidence bundle" in err
    pem.write_text("not a key")
    assert cli(capsys, "receipts", "verify", str(good), "--public-key", str(pem))[0] == 3


# Each tampering an auditor could try on a bundle from the API, and what `receipts verify` says.
# The bundle holds plant-01 #1, plant-02 #1, plant-03 #1, plant-03 #2 (in that order).


def _edit_payload(bundle: dict[str, Any], index: int, change: Callable[[dict[str, Any]], None]) -> None:
    envelope = bundle["receipts"][index]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    change(statement)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _edit_checkpoint(bundle: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    envelope = bundle["checkpoint"]["envelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    change(statement)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _resign_checkpoint(bundle: dict[str, Any], by: ReceiptSigner) -> None:
    statement = json.loads(base64.b64decode(bundle["checkpoint"]["envelope"]["payload"]))
    bundle["checkpoint"]["envelope"] = by.sign(statement)


def _hide_newest_as_before(bundle: dict[str, Any]) -> None:
    """The attack the unsigned chain head allowed: drop the newest receipt, and restate the head."""
    dropped = bundle["receipts"].pop()
    bundle["checkpoint"]["sites"][2].update(sequence=1, head=envelope_digest(bundle["receipts"][-1]))
    bundle["release"]["receipts"] = {"sequence": 3, "head": predicate(dropped)["previous"]}


OTHER_KEY = ReceiptSigner(Ed25519PrivateKey.generate())
TAMPERING: dict[str, tuple[Callable[[dict[str, Any], dict[str, Any]], None], str]] = {
    "edited payload": (
        lambda b, _: _edit_payload(b, 0, lambda s: s["predicate"].update(state="SYNCED")),
        "site plant-01: receipt #1: bad signature: the payload or the signature was changed after signing",
    ),
    "first receipt of a chain dropped": (
        lambda b, _: b["receipts"].pop(2),
        "site plant-03: receipt #1 is missing: position 1 holds #2",
    ),
    "newest receipt of a chain dropped": (
        lambda b, _: b["receipts"].pop(3),
        "site plant-03: receipt #2 is missing: the checkpoint names receipt #2 as the site's head",
    ),
    "newest receipt dropped and its head restated": (
        lambda b, _: _hide_newest_as_before(b),
        "checkpoint: its list of 3 sites does not match the signed root over 3 sites: "
        "a site was dropped, added or changed",
    ),
    "a site's only receipt dropped": (
        lambda b, _: b["receipts"].pop(1),
        "site plant-02: receipt #1 is missing: the checkpoint names receipt #1 as the site's head",
    ),
    "a site dropped from the checkpoint and its receipts": (
        lambda b, _: (b["receipts"].pop(1), b["checkpoint"]["sites"].pop(1)),
        "checkpoint: its list of 2 sites does not match the signed root over 3 sites: "
        "a site was dropped, added or changed",
    ),
    "a site dropped from the checkpoint only": (
        lambda b, _: b["checkpoint"]["sites"].pop(1),
        "checkpoint: its list of 2 sites does not match the signed root over 3 sites",
    ),
    "receipts reordered": (
        lambda b, _: b["receipts"].insert(2, b["receipts"].pop(3)),
        "site plant-03: receipt #1 is out of order: position 1 holds #2, #1 comes later",
    ),
    "a receipt from another release": (
        lambda b, other: b["receipts"].__setitem__(0, other["receipts"][0]),
        "site plant-01: receipt #1: wrong release: it is about",
    ),
    "edited checkpoint": (
        lambda b, _: _edit_checkpoint(b, lambda s: s["predicate"].update(sites=2)),
        "checkpoint: bad signature: the payload or the signature was changed after signing",
    ),
    "unsigned checkpoint": (
        lambda b, _: b["checkpoint"]["envelope"].update(signatures=[]),
        "checkpoint: not signed",
    ),
    "no checkpoint": (
        lambda b, _: b.pop("checkpoint"),
        "the bundle has no release checkpoint: nothing says which receipts it must hold",
    ),
    "checkpoint signed by another key": (
        lambda b, _: _resign_checkpoint(b, OTHER_KEY),
        f"checkpoint: wrong key: signed by key {OTHER_KEY.keyid}, not by the expected key",
    ),
    "checkpoint of another release": (
        lambda b, other: b.__setitem__("checkpoint", other["checkpoint"]),
        "checkpoint: wrong release: it is about",
    ),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_every_tampering_of_an_api_bundle_is_named_by_the_cli(
    tampering: str,
    signed: tuple[Services, str],
    signer: ReceiptSigner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services, release_id = signed
    other_id = push(services, digest="sha256:" + "ab" * 32)  # another release at the same sites
    run_jobs(services)
    bundle, other = fetch_bundle(release_id), fetch_bundle(other_id)
    assert verify_bundle(other, public_key=signer.public_key).receipts == 3
    tamper, expected = TAMPERING[tampering]
    tamper(bundle, other)
    path, pem = tmp_path / "bundle.json", tmp_path / "key.pem"
    path.write_text(json.dumps(bundle))
    pem.write_text(signer.public_key_pem)
    code, out, err = cli(capsys, "receipts", "verify", str(path), "--public-key", str(pem))
    assert (code, out) == (1, "")
    assert err.startswith("INVALID: " + expected), err


def test_a_later_bundle_is_checked_against_an_earlier_one(
    wire: Wire, signer: ReceiptSigner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    services = wire(present={"https://plant-01.example"})
    services.store.upsert_sites([site("plant-01"), site("plant-02")])
    release_id = push(services)
    run_jobs(services)
    use_services(services)
    earlier, later, pem = tmp_path / "earlier.json", tmp_path / "later.json", tmp_path / "key.pem"
    pem.write_text(signer.public_key_pem)
    earlier.write_text(json.dumps(fetch_bundle(release_id)))  # plant-01 VERIFIED, plant-02 SYNCED
    edge(services, "plant-02")
    run_jobs(services)
    later.write_text(json.dumps(fetch_bundle(release_id)))  # plant-02 VERIFIED: its chain grew

    code, out, err = cli(capsys, "receipts", "verify", str(later), "--against", str(earlier), "--public-key", str(pem))
    assert code == 0, err
    assert out.splitlines()[-1] == f"consistent with {earlier}: 1 site(s) moved on since its checkpoint"
    code, _, err = cli(capsys, "receipts", "verify", str(earlier), "--against", str(later))
    assert code == 1 and "is older than the one it is checked against" in err and "swap the bundles" in err

    other_id = push(services, digest="sha256:" + "cd" * 32)
    run_jobs(services)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(fetch_bundle(other_id)))
    code, _, err = cli(capsys, "receipts", "verify", str(later), "--against", str(other))
    assert code == 1 and err.startswith("INVALID: the bundles are about different releases")
    foreign = tmp_path / "foreign.json"
    forged = json.loads(earlier.read_text())
    _resign_checkpoint(forged, OTHER_KEY)
    forged["public_key"], forged["keyid"] = OTHER_KEY.public_key_pem, OTHER_KEY.keyid
    foreign.write_text(json.dumps(forged))
    code, _, err = cli(capsys, "receipts", "verify", str(later), "--against", str(foreign))
    assert code == 1 and err.startswith(f"INVALID: {foreign}: ") and "wrong key" in err


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(asgi_app) as base_url:
        yield base_url


def test_the_cli_fetches_the_bundle_and_the_key_then_verifies_offline(
    signed: tuple[Services, str], signer: ReceiptSigner, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, release_id = signed
    code, out, err = cli(capsys, "receipts", "public-key", "--api-url", server)
    assert code == 0 and out == signer.public_key_pem and err.strip() == f"keyid {signer.keyid}"
    pem = tmp_path / "key.pem"
    pem.write_text(out)
    bundle = tmp_path / "bundle.json"
    code, _, err = cli(capsys, "receipts", "bundle", release_id, "--file", str(bundle), "--api-url", server)
    assert code == 0 and "wrote 4 receipt(s)" in err
    code, out, _ = cli(capsys, "receipts", "bundle", f"{SUBJECT}:1.4.2", "--api-url", server)
    assert code == 0 and json.loads(out) == json.loads(bundle.read_text())
    code, out, _ = cli(capsys, "receipts", "verify", str(bundle), "--public-key", str(pem))
    assert code == 0 and out.startswith("OK: 4 signed receipt(s)")
    assert out.splitlines()[1] == "sites: plant-01, plant-02, plant-03"
    code, _, err = cli(capsys, "receipts", "bundle", "0" * 32, "--api-url", server)
    assert code == 1 and "RELEASE_NOT_FOUND" in err
