"""The site check end to end: real ARM SDK against a loopback ARM, a real OCI registry, every store
backend, the SQLite queue driven by the local runtime, and the SQLite outbox for events."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.arm import ArmConnectedRegistryReader
from shared.adapters.oci import HttpManifestProbe, StaticSiteCredentials
from shared.adapters.outbox import SqliteOutbox
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap
from shared.config import Settings
from shared.domain.messages import ReleaseSummaryJob
from shared.domain.model import Site
from shared.domain.names import release_id_for
from shared.domain.observations import OutboundEventType
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.local.runtime import LocalRuntime, RuntimeOptions
from shared.ports import OutgoingMessage, StateStore
from shared.services.ingest import ingest_delivery
from shared.services.site_check import CheckOutcome, record_dead_letter
from shared.services.summaries import CLOCK_MARGIN, SUMMARY_INTERVAL
from shared.services.sweeper import sweep
from tests.fakes import FIXTURES, FakeClock, RecordingStore, StaticTokenCredential, delivery, load_event
from tests.support.arm_server import ArmServer
from tests.support.hostile_registry import IN_FLIGHT, Answer, hostile_server
from tests.support.registry import RegistryHandle, push_image, start_registry

SUB = "/subscriptions/6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43/resourceGroups/rg-contoso-registry"
REG = f"{SUB}/providers/Microsoft.ContainerRegistry/registries/contosoacr"
REGISTRY = "contosoacr.azurecr.io"
PUSHED_AT = datetime.fromisoformat("2026-11-24T09:41:12.4189245Z")
NOW = PUSHED_AT + timedelta(seconds=30)
CAMERA_DIGEST = "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560"
CAMERA_ID = release_id_for(REGISTRY, "inspection/camera", CAMERA_DIGEST)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "arm" / name).read_text())  # type: ignore[no-any-return]


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class Azure:
    """The loopback ARM with connected registries, sync tokens and scope maps for named sites."""

    def __init__(self, server: ArmServer) -> None:
        self.server = server

    def connected_registry(
        self,
        name: str,
        *,
        last_sync: datetime | None,
        schedule: str = "* * * * *",
        window: str | None = None,
        ttl: str = "P2D",
        state: str = "Online",
        last_activity: datetime | None = None,
        token: str = "token.json",
        repositories: tuple[str, ...] = ("inspection/camera", "inspection/model-runtime"),
    ) -> str:
        body = fixture("connected-registry.json")
        resource_id = f"{REG}/connectedRegistries/{name}"
        body["id"], body["name"] = resource_id, name
        props = body["properties"]
        props["connectionState"] = state
        props["lastActivityTime"] = iso(last_activity or last_sync or PUSHED_AT - timedelta(hours=1))
        sync = props["parent"]["syncProperties"]
        sync.update(schedule=schedule, messageTtl=ttl, tokenId=f"{REG}/tokens/{name}")
        if window:
            sync["syncWindow"] = window
        else:
            sync.pop("syncWindow", None)
        if last_sync is None:
            sync.pop("lastSyncTime", None)
        else:
            sync["lastSyncTime"] = iso(last_sync)
        self.server.put(resource_id, body)
        token_body = fixture(token)
        token_body["id"], token_body["name"] = f"{REG}/tokens/{name}", name
        token_body["properties"]["scopeMapId"] = f"{REG}/scopeMaps/{name}"
        self.server.put(f"{REG}/tokens/{name}", token_body)
        scope = fixture("scope-map.json")
        scope["id"], scope["name"] = f"{REG}/scopeMaps/{name}", name
        scope["properties"]["actions"] = [f"repositories/{repo}/content/read" for repo in repositories]
        self.server.put(f"{REG}/scopeMaps/{name}", scope)
        return resource_id


@pytest.fixture(scope="module")
def arm_server() -> Iterator[ArmServer]:
    server = ArmServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryHandle]:
    handle = start_registry(tmp_path_factory.mktemp("registry"))
    yield handle
    handle.stop()


@pytest.fixture
def azure(arm_server: ArmServer) -> Azure:
    arm_server.reset()
    return Azure(arm_server)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def services(store: StateStore, tmp_path: Path, clock: FakeClock, arm_server: ArmServer) -> Iterator[Services]:
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=clock.now, max_delivery_count=3)
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    arm = ArmConnectedRegistryReader(
        StaticTokenCredential(), base_url=arm_server.base_url, enforce_https=False, retry_total=0
    )
    probe = HttpManifestProbe(timeout=2.0)
    wired = bootstrap(
        Settings(data_dir=tmp_path),
        store=store,
        queue=queue,
        clock=clock,
        arm=arm,
        probe=probe,
        credentials=StaticSiteCredentials({}),
        events=outbox,
    )
    yield wired
    probe.close()
    arm.close()
    queue.close()
    outbox.close()


def push(services: Services, digest: str = CAMERA_DIGEST) -> str:
    event = load_event("eventgrid-image-pushed")
    event["data"]["target"]["digest"] = digest
    event["id"] = digest[-12:]
    ingest_delivery(services, delivery(event), "application/json")
    return release_id_for(REGISTRY, "inspection/camera", digest)


def run(services: Services, clock: FakeClock, *, at: datetime | None = None) -> int:
    if at is not None:
        clock.current = at
    return LocalRuntime(services).process_available()


def summarize(services: Services, clock: FakeClock) -> int:
    """Run the release summaries the row changes scheduled (due at their interval's end)."""
    clock.advance(seconds=(SUMMARY_INTERVAL + CLOCK_MARGIN).total_seconds())
    return LocalRuntime(services).process_available()


def row(services: Services, site: str, release_id: str = CAMERA_ID) -> Any:
    return services.store.get_site_sync(release_id, site).value


def published(services: Services) -> list[Any]:
    return services.outbox.list_events(limit=1000)  # type: ignore[union-attr]


def test_a_sync_after_the_push_makes_the_site_synced_with_arm_evidence_and_the_release_ready(
    services: Services, azure: Azure, clock: FakeClock
) -> None:
    cr = azure.connected_registry("plant-01", last_sync=PUSHED_AT + timedelta(seconds=20))
    services.store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr)])
    push(services)
    assert run(services, clock) == 1

    synced = row(services, "plant-01")
    assert (synced.state, synced.reason, synced.evidence_source) == (
        SyncState.SYNCED,
        SyncReason.SYNCED_AFTER_PUSH,
        EvidenceSource.ARM_LAST_SYNC,
    )
    [evidence] = services.store.list_evidence(CAMERA_ID, site="plant-01")
    assert evidence.state_from is SyncState.PENDING and evidence.state_to is SyncState.SYNCED
    assert evidence.details["lastSyncTime"] == "2026-11-24T09:41:32.418924+00:00"
    assert evidence.details["connectionState"] == "Online"
    # The site's own event goes out with the check; the release's once its summary has counted the rows.
    assert [e.type for e in published(services)] == [OutboundEventType.SITE_SYNCED]
    assert services.store.get_release(CAMERA_ID).value.counts == {SyncState.PENDING: 1}
    assert summarize(services, clock) == 1
    kinds = [e.type for e in published(services)]
    assert kinds == [OutboundEventType.SITE_SYNCED, OutboundEventType.RELEASE_READY]
    assert services.store.get_release(CAMERA_ID).value.counts == {SyncState.SYNCED: 1}
    assert services.queue.count() == 0  # type: ignore[attr-defined]
    assert summarize(services, clock) == 0  # nothing changed since: no further summary


def test_the_manifest_at_the_site_verifies_with_the_registry_answer_as_evidence(
    services: Services, azure: Azure, clock: FakeClock, registry: RegistryHandle
) -> None:
    image = push_image(registry.url, "inspection/camera", "1.4.2")
    cr = azure.connected_registry("plant-01", last_sync=None)
    services.store.upsert_sites(
        [Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr, endpoint=registry.url)]
    )
    release_id = push(services, image.digest)
    run(services, clock)

    verified = row(services, "plant-01", release_id)
    assert (verified.state, verified.reason, verified.evidence_source) == (
        SyncState.VERIFIED,
        SyncReason.MANIFEST_PRESENT,
        EvidenceSource.OCI_PROBE,
    )
    [evidence] = services.store.list_evidence(release_id)
    assert evidence.details["Docker-Content-Digest"] == image.digest and evidence.details["status"] == "200"
    assert evidence.observed_digest == image.digest
    assert not azure.server.requests  # proof at the site made ARM unnecessary


def test_a_site_outside_its_window_waits_then_syncs_in_the_window(
    services: Services, azure: Azure, clock: FakeClock
) -> None:
    cr = azure.connected_registry(
        "plant-02", last_sync=PUSHED_AT - timedelta(hours=11), schedule="0 22 * * *", window="PT6H"
    )
    services.store.upsert_sites(
        [
            Site(
                name="plant-02",
                repositories=("inspection/*",),
                connected_registry=cr,
                schedule="0 22 * * *",
                sync_window=timedelta(hours=6),
            )
        ]
    )
    push(services)
    assert row(services, "plant-02").state is SyncState.WAITING_FOR_WINDOW
    assert row(services, "plant-02").expected_ready_at == datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    assert run(services, clock) == 0  # the first check is scheduled for the window's opening

    # Its check, and the release summary the fan-out scheduled.
    assert run(services, clock, at=datetime(2026, 11, 24, 22, 6, tzinfo=UTC)) == 2
    in_window = row(services, "plant-02")
    assert (in_window.state, in_window.reason) == (SyncState.WAITING_FOR_WINDOW, SyncReason.SYNC_IN_PROGRESS)
    assert (
        datetime(2026, 11, 24, 22, 7, tzinfo=UTC)
        <= in_window.next_check_at
        <= datetime(2026, 11, 24, 22, 21, tzinfo=UTC)
    )

    azure.connected_registry(
        "plant-02", last_sync=datetime(2026, 11, 24, 22, 10, tzinfo=UTC), schedule="0 22 * * *", window="PT6H"
    )
    assert run(services, clock, at=datetime(2026, 11, 24, 22, 30, tzinfo=UTC)) == 1
    assert row(services, "plant-02").state is SyncState.SYNCED


def test_a_site_that_misses_two_windows_turns_stale_and_later_recovers_without_flapping(
    services: Services, azure: Azure, clock: FakeClock
) -> None:
    stuck = PUSHED_AT - timedelta(hours=11)
    cr = azure.connected_registry(
        "mine-07", last_sync=stuck, schedule="0 22 * * *", window="PT6H", ttl="P7D", last_activity=NOW
    )
    services.store.upsert_sites(
        [
            Site(
                name="mine-07",
                repositories=("inspection/*",),
                connected_registry=cr,
                schedule="0 22 * * *",
                sync_window=timedelta(hours=6),
                message_ttl=timedelta(days=7),
            )
        ]
    )
    push(services)
    states = []
    for day in range(24, 28):  # walk through each window's checks; the site stays silent about our digest
        for hour, minute in ((22, 6), (23, 0), (1, 0), (3, 50), (4, 6)):
            at = datetime(2026, 11, day if hour >= 22 else day + 1, hour, minute, tzinfo=UTC)
            azure.connected_registry(
                "mine-07", last_sync=stuck, schedule="0 22 * * *", window="PT6H", ttl="P7D", last_activity=at
            )
            run(services, clock, at=at)
            states.append(row(services, "mine-07").state)
    assert row(services, "mine-07").state is SyncState.STALE
    assert row(services, "mine-07").reason is SyncReason.WINDOW_MISSED
    first_stale = states.index(SyncState.STALE)
    assert all(s is SyncState.STALE for s in states[first_stale:])  # never back to waiting
    assert [e.type for e in published(services)].count(OutboundEventType.SITE_STALE) == 1

    azure.connected_registry(
        "mine-07", last_sync=datetime(2026, 11, 28, 22, 5, tzinfo=UTC), schedule="0 22 * * *", window="PT6H"
    )
    run(services, clock, at=datetime(2026, 11, 28, 22, 30, tzinfo=UTC))
    assert row(services, "mine-07").state is SyncState.SYNCED
    transitions = [(e.state_from, e.state_to) for e in services.store.list_evidence(CAMERA_ID, site="mine-07")]
    assert transitions == [(SyncState.WAITING_FOR_WINDOW, SyncState.STALE), (SyncState.STALE, SyncState.SYNCED)]


@pytest.mark.parametrize(
    ("token", "repositories", "reason"),
    [
        ("token-expired.json", ("inspection/camera",), SyncReason.SYNC_TOKEN_EXPIRED),
        ("token-disabled.json", ("inspection/camera",), SyncReason.SYNC_TOKEN_EXPIRED),
        ("token.json", ("inspection/model-runtime",), SyncReason.REPO_NOT_IN_SCOPE),
    ],
)
def test_permanent_blockers_fail_the_row_and_complete_the_message(
    services: Services, azure: Azure, clock: FakeClock, token: str, repositories: tuple[str, ...], reason: SyncReason
) -> None:
    cr = azure.connected_registry("plant-01", last_sync=None, token=token, repositories=repositories)
    services.store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr)])
    push(services)
    run(services, clock)
    summarize(services, clock)
    failed = row(services, "plant-01")
    assert (failed.state, failed.reason) == (SyncState.FAILED, reason)
    assert services.queue.count() == 0 and services.queue.count(dead_letter=True) == 0  # type: ignore[attr-defined]
    assert OutboundEventType.RELEASE_FAILED in [e.type for e in published(services)]


def test_a_deleted_connected_registry_fails_the_row(services: Services, azure: Azure, clock: FakeClock) -> None:
    services.store.upsert_sites(
        [
            Site(
                name="plant-01",
                repositories=("inspection/*",),
                connected_registry=f"{REG}/connectedRegistries/plant-01",
            )
        ]
    )
    push(services)
    run(services, clock)
    assert (row(services, "plant-01").state, row(services, "plant-01").reason) == (
        SyncState.FAILED,
        SyncReason.SITE_NOT_FOUND,
    )


def test_arm_failing_transiently_is_retried_then_dead_lettered_into_a_failed_row(
    services: Services, azure: Azure, clock: FakeClock
) -> None:
    cr = azure.connected_registry("plant-01", last_sync=None)
    azure.server.fail(cr, 503, times=100)
    services.store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr)])
    push(services)
    run(services, clock)
    failed = row(services, "plant-01")
    assert (failed.state, failed.reason) == (SyncState.FAILED, SyncReason.MAX_DELIVERIES_EXCEEDED)
    assert len(azure.server.requests_for(cr)) == 3  # max delivery count, then the dead-letter handler
    [evidence] = services.store.list_evidence(CAMERA_ID)
    assert (
        evidence.source is EvidenceSource.QUEUE and evidence.details["deadLetterReason"] == "MaxDeliveryCountExceeded"
    )
    assert services.queue.count(dead_letter=True) == 0  # type: ignore[attr-defined]


def test_a_redelivered_job_for_a_final_row_does_no_work(services: Services, azure: Azure, clock: FakeClock) -> None:
    cr = azure.connected_registry("plant-01", last_sync=PUSHED_AT + timedelta(minutes=1))
    services.store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr)])
    push(services)
    run(services, clock)
    summarize(services, clock)
    requests_before = len(azure.server.requests)
    clock.advance(minutes=15)  # past the duplicate-detection window, so the queue takes it again
    services.queue.send_messages(
        [
            OutgoingMessage(
                f"{CAMERA_ID}:plant-01",
                json.dumps({"release_id": CAMERA_ID, "site": "plant-01"}).encode(),
                session_id="plant-01",
            )
        ]
    )
    assert run(services, clock) == 1
    assert len(services.store.list_evidence(CAMERA_ID)) == 1
    assert len(azure.server.requests) == requests_before  # SYNCED without an endpoint: nothing left to ask


def test_a_malformed_job_is_dead_lettered_with_its_reason_and_changes_nothing(
    services: Services, clock: FakeClock
) -> None:
    services.queue.send_messages([OutgoingMessage("junk-1", b"{not a job", session_id="plant-01")])
    runtime = LocalRuntime(services)
    [message] = services.queue.receive_messages(max_count=1)
    runtime.handle_job(message)
    [dead] = services.queue.peek_dead_letters()  # type: ignore[attr-defined]
    assert dead.dead_letter_reason == "MALFORMED_JOB"


def test_a_dead_lettered_release_summary_changes_nothing(services: Services, clock: FakeClock) -> None:
    push(services)
    before = services.store.get_release(CAMERA_ID), services.store.list_site_syncs(CAMERA_ID)
    body = ReleaseSummaryJob(CAMERA_ID, 1).encode()
    result = record_dead_letter(services, body, "MaxDeliveryCountExceeded", "")
    assert result.outcome is CheckOutcome.MISSING
    assert (services.store.get_release(CAMERA_ID), services.store.list_site_syncs(CAMERA_ID)) == before


def test_eight_concurrent_workers_on_one_release_lose_no_update(
    services: Services, azure: Azure, clock: FakeClock
) -> None:
    sites = []
    for i in range(120):
        name = f"store-{i:04d}"
        sites.append(
            Site(
                name=name,
                ring="ring3",
                repositories=("inspection/*",),
                connected_registry=azure.connected_registry(name, last_sync=PUSHED_AT + timedelta(seconds=i + 1)),
            )
        )
    services.store.upsert_sites(sites)
    push(services)
    runtime = LocalRuntime(services)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while batch := services.queue.receive_messages(max_count=1):
                for message in batch:
                    runtime.handle_job(message)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {r.value.state for r in services.store.list_site_syncs(CAMERA_ID)} == {SyncState.SYNCED}
    assert summarize(services, clock) == 1  # 120 row changes, one summary of the release
    assert services.store.get_release(CAMERA_ID).value.counts == {SyncState.SYNCED: 120}
    kinds = [e.type for e in published(services)]
    assert kinds.count(OutboundEventType.RELEASE_READY) == 1 and kinds.count(OutboundEventType.SITE_SYNCED) == 120
    assert len(services.store.list_evidence(CAMERA_ID)) == 120


def test_the_sweeper_recovers_a_lost_job(services: Services, azure: Azure, clock: FakeClock) -> None:
    cr = azure.connected_registry("plant-01", last_sync=PUSHED_AT + timedelta(minutes=1))
    services.store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr)])
    push(services)
    for message in services.queue.receive_messages(max_count=10):  # the job is lost (say a queue was purged)
        services.queue.complete_message(message)
    clock.advance(minutes=30)
    report = sweep(services)
    assert report.jobs_recovered == 1
    run(services, clock)
    assert row(services, "plant-01").state is SyncState.SYNCED


def test_the_sweeper_marks_rows_past_their_ttl_stale(services: Services, azure: Azure, clock: FakeClock) -> None:
    services.store.upsert_sites(
        [
            Site(
                name="plant-01",
                repositories=("inspection/*",),
                schedule="0 22 * * 0",
                sync_window=timedelta(hours=6),
                message_ttl=timedelta(days=1),
            )
        ]
    )
    push(services)
    clock.advance(days=1, minutes=1)
    assert sweep(services).rows_marked_stale == 1
    stale = row(services, "plant-01")
    assert (stale.state, stale.reason) == (SyncState.STALE, SyncReason.MESSAGE_TTL_EXPIRED)
    assert [e.type for e in published(services)] == [OutboundEventType.SITE_STALE]


def test_the_sweeper_reads_only_the_rows_that_are_due(services: Services, azure: Azure, clock: FakeClock) -> None:
    synced = [
        Site(
            name=f"store-{i:04d}",
            repositories=("inspection/*",),
            connected_registry=azure.connected_registry(f"store-{i:04d}", last_sync=PUSHED_AT + timedelta(seconds=5)),
        )
        for i in range(30)
    ]
    # Syncs nightly 22:00-01:00 UTC; one closed window without the digest is late enough.
    camp = Site(name="camp-01", repositories=("inspection/*",), schedule="0 22 * * *", sync_window=timedelta(hours=3))
    services.store.upsert_sites([*synced, replace(camp, stale_after_windows=1)])
    push(services)
    run(services, clock)
    summarize(services, clock)
    waiting = row(services, "camp-01")
    assert waiting.state is SyncState.WAITING_FOR_WINDOW and waiting.next_check_at < waiting.expected_ready_at
    recording = RecordingStore(services.store)
    sweeping = bootstrap(
        Settings(data_dir=services.settings.data_dir),
        store=recording,  # type: ignore[arg-type]
        queue=services.queue,
        clock=clock,
        arm=services.arm,
        events=services.events,
    )
    assert sweep(sweeping).rows_marked_stale == 0
    # Nothing is due before 22:05 (the release's summary says so): no row is read at all.
    assert recording.listed == []
    clock.current = waiting.next_check_at - timedelta(minutes=1)
    sweep(sweeping)
    # Its summary is hours old now: the sweep queries the due rows itself (none yet) and asks for a new one.
    assert recording.listed == [("list_due_site_syncs", 0)]
    recording.listed.clear()
    # Its check at 22:05 was lost, and the window closed at 01:00 without the digest: the row is
    # due, and the sweep finds it stale (and recovers the check).
    recording.listed.clear()
    clock.current = waiting.expected_ready_at + timedelta(minutes=5)
    assert sweep(sweeping).rows_marked_stale == 1
    assert recording.listed == [("list_due_site_syncs", 1)]
    assert (row(services, "camp-01").state, row(services, "camp-01").reason) == (
        SyncState.STALE,
        SyncReason.WINDOW_MISSED,
    )


def test_the_sweeper_follows_schedule_changes_made_in_azure(services: Services, azure: Azure) -> None:
    cr = azure.connected_registry("plant-02", last_sync=None, schedule="0 3 * * *", window="PT2H", ttl="P3D")
    services.store.upsert_sites(
        [
            Site(
                name="plant-02",
                repositories=("inspection/*",),
                connected_registry=cr,
                schedule="0 22 * * *",
                sync_window=timedelta(hours=6),
            )
        ]
    )
    assert sweep(services).sites_refreshed == 1
    site = services.store.get_site("plant-02")
    assert (site.schedule, site.sync_window, site.message_ttl) == ("0 3 * * *", timedelta(hours=2), timedelta(days=3))
    assert sweep(services).sites_refreshed == 0


def test_evidence_never_carries_credentials(services: Services, azure: Azure, clock: FakeClock, tmp_path: Path) -> None:
    (tmp_path / "secure").mkdir()
    registry = start_registry(tmp_path / "secure", users={"plant01-client": "s3cret-p@ss"})
    try:
        services = bootstrap(
            Settings(data_dir=tmp_path),
            store=services.store,
            queue=services.queue,
            clock=clock,
            arm=services.arm,
            probe=HttpManifestProbe(timeout=2.0),
            events=services.events,
            credentials=StaticSiteCredentials.from_environ(
                {
                    "ACRSYNC_SITE_CREDENTIALS": json.dumps(
                        {"plant-01": {"username": "plant01-client", "password": "s3cret-p@ss"}}
                    )
                }
            ),
        )
        image = push_image(
            registry.url,
            "inspection/camera",
            "1.4.2",
            headers={"Authorization": "Basic cGxhbnQwMS1jbGllbnQ6czNjcmV0LXBAc3M="},
        )
        services.store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",), endpoint=registry.url)])
        release_id = push(services, image.digest)
        run(services, clock)
        assert row(services, "plant-01", release_id).state is SyncState.VERIFIED
        stored = json.dumps([copy.deepcopy(e.details) for e in services.store.list_evidence(release_id)])
        assert "s3cret" not in stored and "cGxhbnQwMS1jbGllbnQ6" not in stored
    finally:
        services.probe.close()  # type: ignore[attr-defined]
        registry.stop()


def test_checks_feed_the_job_counter_and_the_lag_histogram(services: Services, azure: Azure, clock: FakeClock) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from shared import observability

    reader = InMemoryMetricReader()
    observability.use_meter_provider(MeterProvider(metric_readers=[reader]))
    try:
        cr = azure.connected_registry("plant-01", last_sync=PUSHED_AT + timedelta(seconds=20))
        services.store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr)])
        push(services)
        run(services, clock)
        points = {
            m.name: list(m.data.data_points)
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
    finally:
        observability.use_meter_provider(None)
    [jobs] = points["acrsync.jobs"]
    assert jobs.value == 1 and dict(jobs.attributes) == {"outcome": "succeeded"}
    [lag] = points["acrsync.sync.lag_seconds"]
    assert dict(lag.attributes) == {"site": "plant-01", "result": "synced"}
    assert lag.sum == pytest.approx(20.0)  # push -> the sync ARM reports, not the moment the check looked


def test_a_site_whose_registry_drips_its_answer_does_not_hold_back_the_other_sites(
    services: Services, clock: FakeClock, registry: RegistryHandle
) -> None:
    image = push_image(registry.url, "inspection/camera", "1.4.2")
    drip = Answer(200, [("Docker-Content-Digest", image.digest)], drip_seconds=30.0)
    with hostile_server(lambda seen: drip) as dripping:
        # The dripping site sorts first, so its job is the older one on the queue.
        services.store.upsert_sites(
            [
                Site(name="plant-01", repositories=("inspection/*",), endpoint=dripping.url),
                Site(name="plant-02", repositories=("inspection/*",), endpoint=registry.url),
            ]
        )
        release_id = push(services, image.digest)
        runtime = LocalRuntime(services, RuntimeOptions(workers=2, poll_seconds=0.05))
        runtime.start()
        try:
            assert dripping.wait_for(lambda server: bool(server.seen()))
            give_up = time.monotonic() + 60
            while row(services, "plant-02", release_id).state is not SyncState.VERIFIED:
                assert time.monotonic() < give_up, "the normal site was never checked"
                time.sleep(0.05)
            # The normal site got its answer while the dripping one is still being heard out.
            assert row(services, "plant-01", release_id).state is SyncState.PENDING
            assert dripping.seen()[0].outcome == IN_FLIGHT
        finally:
            dripping.stop()
            runtime.stop()


def test_a_registry_answer_refused_at_the_site_is_named_in_the_evidence(
    services: Services, azure: Azure, clock: FakeClock
) -> None:
    garbled = Answer(200, [("Docker-Content-Digest", "x" * 8000)])
    with hostile_server(lambda seen: garbled) as refusing:
        cr = azure.connected_registry("plant-01", last_sync=NOW)
        services.store.upsert_sites(
            [Site(name="plant-01", repositories=("inspection/*",), connected_registry=cr, endpoint=refusing.url)]
        )
        push(services)
        run(services, clock)
    synced = row(services, "plant-01")
    assert (synced.state, synced.evidence_source) == (SyncState.SYNCED, EvidenceSource.ARM_LAST_SYNC)
    [evidence] = services.store.list_evidence(CAMERA_ID)
    refusal = evidence.details["probeError"]
    assert refusal.startswith("refused by the site registry: ") and "malformed Docker-Content-Digest" in refusal
    assert len(refusal) <= 400 and refusal.isprintable()
