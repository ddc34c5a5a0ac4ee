"""Signed delivery receipts end to end, on every store backend: the site check and edge events sign
each arrival in the same atomic write as the row, the chain stays exact with eight workers and
concurrent edge events on one release, the API serves a bundle and the public key, and the CLI
verifies the bundle offline (and refuses a tampered one)."""

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
from shared.domain.model import Site
from shared.domain.observations import (
    BasicCredentials,
    ConnectedRegistryState,
    ConnectionState,
    ManifestObservation,
    ProbeOutcome,
    SyncScope,
)
from shared.domain.receipts import ReceiptSigner, envelope_digest, verify_bundle
from shared.domain.states import READY_STATES, SyncState
from shared.errors import UpstreamUnavailable
from shared.local.runtime import LocalRuntime
from shared.ports import StateStore
from shared.services.bundles import evidence_bundle
from shared.services.ingest import ingest_delivery
from shared.services.receipts import RECEIPT_DETAIL, SEQUENCE_DETAIL
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


def push(services: Services) -> str:
    event = copy.deepcopy(load_event("eventgrid-image-pushed"))
    event["eventTime"] = PUSHED_AT.isoformat()
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


def run_jobs(services: Services, workers: int = 1) -> None:
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


def receipts_in_store(services: Services, release_id: str) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for record in services.store.list_evidence(release_id):
        if RECEIPT_DETAIL in record.details:
            number = int(record.details[SEQUENCE_DETAIL])
            assert number not in found, f"two receipts #{number}"
            found[number] = {"record": record, "envelope": json.loads(record.details[RECEIPT_DETAIL])}
    return found


def predicate(envelope: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope["payload"]))["predicate"]  # type: ignore[no-any-return]


# -- signing on arrival ---------------------------------------------------------------------------


def test_each_arrival_is_signed_with_the_row_and_chained(wire: Wire, signer: ReceiptSigner) -> None:
    services = wire(out_of_scope=frozenset({"plant-02"}))
    services.store.upsert_sites(
        [
            # syncs daily 09:00-12:00 UTC: the check at 09:41 falls in the window open since 09:00
            site("plant-01", schedule="0 9 * * *", sync_window=timedelta(hours=3)),
            site("plant-02"),  # its scope map leaves the repository out: FAILED, no receipt
        ]
    )
    release_id = push(services)
    run_jobs(services)
    header = services.store.get_release(release_id).value
    assert services.store.get_site_sync(release_id, "plant-01").value.state is SyncState.SYNCED
    assert services.store.get_site_sync(release_id, "plant-02").value.state is SyncState.FAILED
    [first] = receipts_in_store(services, release_id).values()
    assert header.receipt_sequence == 1 and header.receipt_head == envelope_digest(first["envelope"])
    # The receipt rides on the evidence record of the transition it attests.
    record = first["record"]
    assert (record.site, record.state_from, record.state_to) == ("plant-01", SyncState.PENDING, SyncState.SYNCED)
    assert predicate(first["envelope"]) == {
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

    edge(services, "plant-01")  # the connected registry's own event: SYNCED -> VERIFIED, receipt #2
    edge(services, "plant-01")  # late proof again: evidence, but no transition and no receipt
    receipts = receipts_in_store(services, release_id)
    assert sorted(receipts) == [1, 2]
    second = predicate(receipts[2]["envelope"])
    assert second["state"] == "VERIFIED" and second["evidence_source"] == "connected-registry-event"
    assert second["previous"] == envelope_digest(receipts[1]["envelope"])
    assert second["window"] is None  # 22:07 is outside the 09:00-12:00 window
    bundle = evidence_bundle(services, release_id)
    assert [envelope_digest(e) for e in bundle["receipts"]] == [
        envelope_digest(receipts[n]["envelope"]) for n in (1, 2)
    ]
    verified = verify_bundle(bundle, public_key=signer.public_key)
    assert verified.receipts == 2 and verified.sites == ("plant-01",)
    assert verified.head == services.store.get_release(release_id).value.receipt_head


def test_eight_workers_and_edge_events_on_one_release_sign_an_exact_chain(wire: Wire, signer: ReceiptSigner) -> None:
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

    rows = {v.value.site: v.value for v in services.store.list_site_syncs(release_id)}
    assert {row.state for row in rows.values()} == {SyncState.VERIFIED}
    header = services.store.get_release(release_id).value
    assert header.counts == {SyncState.VERIFIED: 48}
    # One receipt per move into SYNCED or VERIFIED, numbered 1..n without gaps or repeats.
    arrivals = [
        e
        for e in services.store.list_evidence(release_id)
        if e.state_to in READY_STATES and e.state_from is not e.state_to
    ]
    stored = receipts_in_store(services, release_id)
    assert 48 <= len(arrivals) == len(stored) == header.receipt_sequence <= 72
    assert sorted(stored) == list(range(1, header.receipt_sequence + 1))
    assert all(RECEIPT_DETAIL in e.details for e in arrivals)
    previous = [predicate(item["envelope"])["previous"] for item in stored.values()]
    assert len(set(previous)) == len(previous)  # no two workers signed after the same receipt
    result = verify_bundle(evidence_bundle(services, release_id), public_key=signer.public_key)
    assert result.receipts == header.receipt_sequence and result.head == header.receipt_head
    assert result.sites == tuple(names)


def test_without_a_key_in_azure_rows_move_and_nothing_is_signed(wire: Wire, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, in_azure=True)  # no ACRSYNC_SIGNING_KEY
    services = wire(present={"https://plant-01.example"}, settings=settings, signer=None)
    assert services.signer is None
    services.store.upsert_sites([site("plant-01")])
    release_id = push(services)
    run_jobs(services)
    assert services.store.get_site_sync(release_id, "plant-01").value.state is SyncState.VERIFIED
    assert services.store.get_release(release_id).value.receipt_sequence == 0
    assert receipts_in_store(services, release_id) == {}
    bundle = evidence_bundle(services, release_id)
    assert bundle["receipts"] == [] and bundle["keyid"] is None and bundle["public_key"] is None
    use_services(services)
    answer = TestClient(asgi_app).get("/api/signing-key")
    assert answer.status_code == 404 and answer.json()["code"] == "SIGNING_KEY_NOT_CONFIGURED"


# -- the API and the CLI --------------------------------------------------------------------------


@pytest.fixture
def signed(wire: Wire) -> tuple[Services, str]:
    """A release with three receipts: plant-01 and plant-02 VERIFIED, plant-03 SYNCED."""
    services = wire(present={"https://plant-01.example", "https://plant-02.example"})
    services.store.upsert_sites([site("plant-01"), site("plant-02"), site("plant-03")])
    release_id = push(services)
    run_jobs(services)
    use_services(services)
    assert services.store.get_release(release_id).value.receipt_sequence == 3
    return services, release_id


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_api_bundle_verifies_with_the_cli_and_a_tampered_one_does_not(
    signed: tuple[Services, str], signer: ReceiptSigner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, release_id = signed
    client = TestClient(asgi_app)
    answer = client.get(f"/api/releases/{release_id}/evidence", params={"format": "bundle"})
    assert answer.status_code == 200 and answer.headers["etag"]
    bundle = answer.json()
    assert bundle["mediaType"] == "application/vnd.acrsync.evidence-bundle.v1+json"
    assert bundle["release"]["id"] == release_id and bundle["release"]["receipts"]["sequence"] == 3
    assert bundle["keyid"] == signer.keyid and bundle["public_key"] == signer.public_key_pem
    assert [predicate(e)["sequence"] for e in bundle["receipts"]] == [1, 2, 3]
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
    assert out.splitlines()[0] == (
        f"OK: 3 signed receipt(s) for {SUBJECT}@{bundle['release']['digest']} (release {release_id}), "
        f"chain head {envelope_digest(bundle['receipts'][-1])}, key {signer.keyid}"
    )
    code, _, err = cli(capsys, "receipts", "verify", str(good))
    assert code == 0 and "pass --public-key to pin the signer" in err

    tampered = copy.deepcopy(bundle)
    envelope = tampered["receipts"][1]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["state"] = "VERIFIED" if statement["predicate"]["state"] == "SYNCED" else "SYNCED"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    code, _, err = cli(capsys, "receipts", "verify", str(bad), "--public-key", str(pem))
    assert code == 1
    assert err.strip() == "INVALID: receipt #2: bad signature: the payload or the signature was changed after signing"

    dropped = copy.deepcopy(bundle)
    del dropped["receipts"][0]
    bad.write_text(json.dumps(dropped))
    code, _, err = cli(capsys, "receipts", "verify", str(bad), "--public-key", str(pem))
    assert (code, err.strip()) == (1, "INVALID: receipt #1 is missing: position 1 holds #2")

    other = tmp_path / "other.pem"
    other.write_text(ReceiptSigner(Ed25519PrivateKey.generate()).public_key_pem)
    code, _, err = cli(capsys, "receipts", "verify", str(good), "--public-key", str(other))
    assert code == 1 and "INVALID: receipt #1: wrong key: signed by key " + signer.keyid in err

    bad.write_text("{not json")
    assert cli(capsys, "receipts", "verify", str(bad))[0] == 3
    assert cli(capsys, "receipts", "verify", str(tmp_path / "missing.json"))[0] == 3
    bad.write_text(json.dumps({"value": []}))
    code, _, err = cli(capsys, "receipts", "verify", str(bad))
    assert code == 3 and "not an evidence bundle" in err
    pem.write_text("not a key")
    assert cli(capsys, "receipts", "verify", str(good), "--public-key", str(pem))[0] == 3


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
    assert code == 0 and "wrote 3 receipt(s)" in err
    code, out, _ = cli(capsys, "receipts", "bundle", f"{SUBJECT}:1.4.2", "--api-url", server)
    assert code == 0 and json.loads(out) == json.loads(bundle.read_text())
    code, out, _ = cli(capsys, "receipts", "verify", str(bundle), "--public-key", str(pem))
    assert code == 0 and out.startswith("OK: 3 signed receipt(s)")
    assert out.splitlines()[1] == "sites: plant-01, plant-02, plant-03"
    code, _, err = cli(capsys, "receipts", "bundle", "0" * 32, "--api-url", server)
    assert code == 1 and "RELEASE_NOT_FOUND" in err
