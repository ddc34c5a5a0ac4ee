"""Ingest and fan-out end to end through the services, on every store backend and the SQLite queue."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap
from shared.config import Settings
from shared.domain.messages import ReleaseSummaryJob, decode_job
from shared.domain.model import Site, TagPolicy
from shared.domain.names import release_id_for
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.errors import QueueUnavailable
from shared.ports import ReceivedMessage, StateStore
from shared.services.ingest import IngestOutcome, backfill_site, ingest_delivery, ingest_event
from shared.services.summaries import summarize_release
from tests.fakes import FailingSends, FakeClock, delivery, load_event

REGISTRY = "contosoacr.azurecr.io"
CAMERA_DIGEST = "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560"
CAMERA_ID = release_id_for(REGISTRY, "inspection/camera", CAMERA_DIGEST)
NOW = datetime(2026, 11, 24, 9, 41, 30, tzinfo=UTC)
CR_ID = (
    "/subscriptions/6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43/resourceGroups/rg-contoso-registry"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr/connectedRegistries/"
)

SITES = [
    Site(
        name="plant-01",
        ring="ring1",
        critical=True,
        repositories=("inspection/*",),
        connected_registry=CR_ID + "plant-01",
    ),
    Site(
        name="plant-02",
        ring="ring1",
        repositories=("inspection/*", "gateway"),
        schedule="0 2 * * *",
        sync_window=timedelta(hours=3),
    ),
    Site(name="store-0001", ring="ring2", repositories=("retail/*",), tag_policy=TagPolicy(semver_only=True)),
    Site(name="mine-07", ring="ring2", repositories=("inspection/camera",), tag_policy=TagPolicy(exclude=("latest",))),
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteJobQueue]:
    jobs = SqliteJobQueue(tmp_path / "queue.db", clock=clock.now)
    yield jobs
    jobs.close()


@pytest.fixture
def services(store: StateStore, queue: SqliteJobQueue, clock: FakeClock, tmp_path: Path) -> Services:
    store.upsert_sites(SITES)
    return bootstrap(Settings(data_dir=tmp_path), store=store, queue=queue, clock=clock)


def drain(queue: SqliteJobQueue, clock: FakeClock, *, until: timedelta = timedelta(days=2)) -> list[ReceivedMessage]:
    """Every site-sync job the queue will ever deliver (scheduled ones included), completed as
    received; release summaries are completed too, and left out."""
    saved, seen = clock.current, []
    clock.current = NOW + until
    while batch := queue.receive_messages(max_count=100):
        for message in batch:
            if not isinstance(decode_job(message.body), ReleaseSummaryJob):
                seen.append(message)
            queue.complete_message(message)
    clock.current = saved
    return seen


def deliver(services: Services, *events: dict[str, Any]) -> list[IngestOutcome]:
    return [r.outcome for r in ingest_delivery(services, delivery(*events), "application/json").results]


def states(store: StateStore, release_id: str) -> dict[str, tuple[SyncState, SyncReason | None]]:
    return {r.value.site: (r.value.state, r.value.reason) for r in store.list_site_syncs(release_id)}


def test_a_push_fans_out_to_in_scope_sites_and_records_why_others_are_skipped(
    services: Services, queue: SqliteJobQueue, clock: FakeClock
) -> None:
    assert deliver(services, load_event("eventgrid-image-pushed")) == [IngestOutcome.RELEASE_CREATED]

    release = services.store.get_release(CAMERA_ID).value
    assert (release.repository, release.digest, release.tags) == ("inspection/camera", CAMERA_DIGEST, {"1.4.2"})
    assert release.media_type == "application/vnd.oci.image.manifest.v1+json" and release.size == 1574
    assert states(services.store, CAMERA_ID) == {
        "plant-01": (SyncState.PENDING, SyncReason.AWAITING_FIRST_CHECK),
        "plant-02": (SyncState.WAITING_FOR_WINDOW, SyncReason.WINDOW_CLOSED),
        "store-0001": (SyncState.SKIPPED, SyncReason.REPO_NOT_IN_SCOPE),
        "mine-07": (SyncState.PENDING, SyncReason.AWAITING_FIRST_CHECK),
    }
    assert release.counts == {SyncState.PENDING: 2, SyncState.WAITING_FOR_WINDOW: 1, SyncState.SKIPPED: 1}
    assert services.store.is_release_published(CAMERA_ID)
    jobs = drain(queue, clock)
    assert sorted(m.message_id for m in jobs) == sorted(f"{CAMERA_ID}:{s}" for s in ("plant-01", "plant-02", "mine-07"))
    assert {m.session_id for m in jobs} == {"plant-01", "plant-02", "mine-07"}


def test_a_scheduled_site_waits_for_its_window(services: Services, queue: SqliteJobQueue, clock: FakeClock) -> None:
    deliver(services, load_event("eventgrid-image-pushed"))
    row = services.store.get_site_sync(CAMERA_ID, "plant-02").value
    assert row.expected_ready_at == datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 02:00 + PT3H, the next window
    clock.current = datetime(2026, 11, 25, 1, 59, tzinfo=UTC)
    early = queue.receive_messages(max_count=10)
    assert "plant-02" not in {m.session_id for m in early}
    clock.current = datetime(2026, 11, 25, 2, 10, tzinfo=UTC)
    assert [m.session_id for m in queue.receive_messages(max_count=10) if m.session_id == "plant-02"] == ["plant-02"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duplicated_and_reordered_deliveries_leave_one_release_and_one_job_per_site(
    services: Services, queue: SqliteJobQueue, clock: FakeClock, seed: int
) -> None:
    events = [
        load_event("eventgrid-image-pushed"),
        load_event("cloudevents-image-pushed"),
        load_event("eventgrid-connected-registry-image-pushed"),
    ]
    deliveries = [copy.deepcopy(e) for e in events for _ in range(3)]
    random.Random(seed).shuffle(deliveries)
    for event in deliveries:
        deliver(services, event)

    assert [r.release_id for r in services.store.list_releases().items] == [CAMERA_ID]
    assert services.store.get_site_sync(CAMERA_ID, "plant-01").value.state is SyncState.VERIFIED
    jobs = drain(queue, clock)
    in_flight = {m.session_id for m in jobs}
    assert len(jobs) == len(in_flight)  # one job per site
    assert in_flight <= {"plant-01", "plant-02", "mine-07"} and {"plant-02", "mine-07"} <= in_flight
    edge = [e for e in services.store.list_evidence(CAMERA_ID) if e.source is EvidenceSource.CONNECTED_REGISTRY_EVENT]
    assert len(edge) == 1 and edge[0].observed_digest == CAMERA_DIGEST and edge[0].site == "plant-01"
    summarize_release(services, CAMERA_ID)  # the header's counts follow the rows through the summary
    assert services.store.get_release(CAMERA_ID).value.counts == {
        SyncState.VERIFIED: 1,
        SyncState.PENDING: 1,
        SyncState.WAITING_FOR_WINDOW: 1,
        SyncState.SKIPPED: 1,
    }


def test_a_crash_between_rows_and_jobs_heals_on_redelivery(
    store: StateStore, queue: SqliteJobQueue, clock: FakeClock, tmp_path: Path
) -> None:
    store.upsert_sites(SITES)
    flaky = FailingSends(queue, failures=1)
    services = bootstrap(Settings(data_dir=tmp_path), store=store, queue=flaky, clock=clock)
    event = load_event("eventgrid-image-pushed")

    with pytest.raises(QueueUnavailable):
        deliver(services, event)
    assert len(store.list_site_syncs(CAMERA_ID)) == 4  # rows written, then the process "died"
    assert not store.is_release_published(CAMERA_ID)
    assert queue.count() == 0

    assert deliver(services, event) == [IngestOutcome.FANOUT_RESUMED]
    assert deliver(services, event) == [IngestOutcome.DUPLICATE]
    assert len(store.list_site_syncs(CAMERA_ID)) == 4
    assert sorted(m.session_id or "" for m in drain(queue, clock)) == ["mine-07", "plant-01", "plant-02"]
    assert store.get_release(CAMERA_ID).value.counts == {
        SyncState.PENDING: 2,
        SyncState.WAITING_FOR_WINDOW: 1,
        SyncState.SKIPPED: 1,
    }


def test_untagged_pushes_are_not_releases(services: Services, queue: SqliteJobQueue) -> None:
    event = load_event("eventgrid-image-pushed")
    del event["data"]["target"]["tag"]
    event["subject"] = "inspection/camera"
    assert deliver(services, event) == [IngestOutcome.IGNORED_UNTAGGED]
    assert services.store.list_releases().items == [] and queue.count() == 0


def test_a_new_tag_for_a_known_digest_joins_its_tag_set_and_reaches_sites_that_now_admit_it(
    services: Services, queue: SqliteJobQueue, clock: FakeClock
) -> None:
    latest = load_event("eventgrid-image-pushed")
    latest["data"]["target"]["tag"] = "latest"
    assert deliver(services, latest) == [IngestOutcome.RELEASE_CREATED]
    assert states(services.store, CAMERA_ID)["mine-07"] == (SyncState.SKIPPED, SyncReason.TAG_NOT_ADMITTED)
    drain(queue, clock)

    versioned = load_event("eventgrid-image-pushed")  # same digest, pushed as 1.4.2
    assert deliver(services, versioned) == [IngestOutcome.TAGS_ADDED]
    assert services.store.get_release(CAMERA_ID).value.tags == {"latest", "1.4.2"}
    assert states(services.store, CAMERA_ID)["mine-07"] == (SyncState.PENDING, SyncReason.SCOPE_GREW)
    assert [m.session_id for m in drain(queue, clock)] == ["mine-07"]
    assert [r.release_id for r in services.store.list_releases(tag="1.4.2").items] == [CAMERA_ID]
    assert services.store.get_release(CAMERA_ID).value.counts[SyncState.SKIPPED] == 1


def test_deletion_withdraws_rows_not_yet_synced_and_keeps_proof_of_synced_ones(
    services: Services, clock: FakeClock
) -> None:
    deliver(services, load_event("eventgrid-image-pushed"), load_event("eventgrid-connected-registry-image-pushed"))
    deleted = load_event("eventgrid-image-deleted")
    deleted["data"]["target"].update(repository="inspection/camera", digest=CAMERA_DIGEST)
    clock.advance(hours=30)

    assert deliver(services, deleted) == [IngestOutcome.WITHDRAWN]
    assert deliver(services, deleted) == [IngestOutcome.DUPLICATE]
    rows = states(services.store, CAMERA_ID)
    assert rows["plant-01"][0] is SyncState.VERIFIED
    assert rows["plant-02"] == (SyncState.WITHDRAWN, SyncReason.RELEASE_DELETED)
    assert rows["mine-07"] == (SyncState.WITHDRAWN, SyncReason.RELEASE_DELETED)
    assert rows["store-0001"][0] is SyncState.SKIPPED
    still_there = [e for e in services.store.list_evidence(CAMERA_ID, site="plant-01") if "still present" in e.summary]
    assert len(still_there) == 1 and still_there[0].source is EvidenceSource.PARENT_REGISTRY_EVENT
    assert services.store.get_release(CAMERA_ID).value.withdrawn_at is not None
    summarize_release(services, CAMERA_ID)  # the summary the withdrawal scheduled
    assert services.store.get_release(CAMERA_ID).value.counts == {
        SyncState.VERIFIED: 1,
        SyncState.WITHDRAWN: 2,
        SyncState.SKIPPED: 1,
    }


def test_a_deletion_that_overtakes_its_push_stops_the_fan_out(services: Services, queue: SqliteJobQueue) -> None:
    deleted = load_event("eventgrid-image-deleted")
    pushed = load_event("eventgrid-image-pushed")
    deleted["data"]["target"].update(repository="inspection/camera", digest=CAMERA_DIGEST)
    assert deliver(services, deleted, pushed) == [IngestOutcome.WITHDRAWN, IngestOutcome.IGNORED_WITHDRAWN]
    assert queue.count() == 0 and services.store.list_site_syncs(CAMERA_ID) == []


def test_an_edge_event_before_the_parent_event_creates_the_release_and_fan_out_completes_later(
    services: Services, queue: SqliteJobQueue, clock: FakeClock
) -> None:
    assert deliver(services, load_event("eventgrid-connected-registry-image-pushed")) == [IngestOutcome.EDGE_RECORDED]
    assert services.store.list_releases().items == []  # not published before the parent's event
    assert states(services.store, CAMERA_ID) == {"plant-01": (SyncState.VERIFIED, SyncReason.EDGE_EVENT_RECEIVED)}

    assert deliver(services, load_event("eventgrid-image-pushed")) == [IngestOutcome.FANOUT_RESUMED]
    release = services.store.get_release(CAMERA_ID).value
    assert release.pushed_at == datetime.fromisoformat("2026-11-24T09:41:12.4189245Z")  # the parent's push time
    assert sorted(m.session_id or "" for m in drain(queue, clock)) == ["mine-07", "plant-02"]
    assert release.counts == {
        SyncState.VERIFIED: 1,
        SyncState.PENDING: 1,
        SyncState.WAITING_FOR_WINDOW: 1,
        SyncState.SKIPPED: 1,
    }


def test_edge_events_from_unknown_connected_registries_change_nothing(services: Services) -> None:
    edge = load_event("eventgrid-connected-registry-image-pushed")
    edge["data"]["connectedregistry"]["name"] = "plant-99"
    edge["topic"] = edge["topic"].replace("plant-01", "plant-99")
    assert deliver(services, edge) == [IngestOutcome.IGNORED_UNKNOWN_SITE]
    assert services.store.list_site_syncs(CAMERA_ID) == []


def test_edge_key_casing_and_topic_suffix_are_both_understood(services: Services) -> None:
    edge = load_event("eventgrid-connected-registry-image-pushed")
    edge["data"]["connectedRegistry"] = edge["data"].pop("connectedregistry")
    deliver(services, edge)
    assert services.store.get_site_sync(CAMERA_ID, "plant-01").value.state is SyncState.VERIFIED


def test_a_chart_push_is_a_release_tagged_with_its_version(services: Services) -> None:
    services.store.upsert_sites(
        [Site(name="plant-03", repositories=("inspection/*",), tag_policy=TagPolicy(semver_only=True))]
    )
    assert deliver(services, load_event("eventgrid-chart-pushed")) == [IngestOutcome.RELEASE_CREATED]
    [release] = services.store.list_releases().items
    assert release.kind.value == "CHART" and release.tags == {"0.9.3"}
    assert states(services.store, release.release_id)["plant-03"][0] is SyncState.PENDING


def test_other_event_types_are_acknowledged_and_ignored(services: Services) -> None:
    other = load_event("eventgrid-image-pushed")
    other["eventType"] = "Microsoft.Storage.BlobCreated"
    assert deliver(services, other) == [IngestOutcome.IGNORED_EVENT_TYPE]
    assert services.store.list_releases().items == []


def test_a_poison_event_from_the_trigger_is_dropped_with_a_warning(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    poison = load_event("eventgrid-image-pushed")
    poison["data"]["target"]["digest"] = "sha256:not-hex"
    result = ingest_event(services, poison)
    assert result.outcome is IngestOutcome.REJECTED
    assert any(r.levelname == "WARNING" and "INVALID_DIGEST" in r.getMessage() for r in caplog.records)
    assert services.store.list_releases().items == []


def test_backfill_gives_a_new_site_the_current_release_of_each_repository(
    services: Services, queue: SqliteJobQueue, clock: FakeClock
) -> None:
    old = load_event("eventgrid-image-pushed")
    new = copy.deepcopy(old)
    new.update(id="e-new", eventTime="2026-11-24T10:00:00Z")
    new["data"]["target"].update(tag="1.5.0", digest="sha256:" + "b" * 64)
    deliver(services, old, new)
    drain(queue, clock)

    services.store.upsert_sites([Site(name="plant-09", repositories=("inspection/*",))])
    results = backfill_site(services, "plant-09")
    newest = release_id_for(REGISTRY, "inspection/camera", "sha256:" + "b" * 64)
    assert [r.release_id for r in results] == [newest]
    assert [m.message_id for m in drain(queue, clock)] == [f"{newest}:plant-09:backfill:0"]
    assert services.store.get_site_sync(newest, "plant-09").value.state is SyncState.PENDING
    assert services.store.get_release(newest).value.counts[SyncState.PENDING] == 3


def test_fan_out_hands_service_bus_one_session_message_per_site_in_few_batches(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    from tests.support.servicebus import RecordingServiceBus

    sites = [Site(name=f"store-{i:04d}", ring="ring3", repositories=("inspection/*",)) for i in range(1000)]
    sites.append(
        Site(name="plant-02", repositories=("inspection/*",), schedule="0 2 * * *", sync_window=timedelta(hours=3))
    )
    store.upsert_sites(sites)
    bus = RecordingServiceBus()
    services = bootstrap(Settings(data_dir=tmp_path), store=store, queue=bus.queue(), clock=clock)
    event = load_event("eventgrid-image-pushed")

    deliver(services, event)
    deliver(services, event)  # a redelivery sends nothing more

    summary = f"release:{CAMERA_ID}"
    messages = {m.message_id: m for m in bus.sender.messages if m.session_id != summary}
    assert len(bus.sender.messages) == 1001 + 1 and len(messages) == 1001
    # 1,001 small jobs and the release's first summary (it records the new rows in the site ledger,
    # due at the end of its interval) fit two 256 KiB Standard batches.
    assert len(bus.sender.batches) == 2
    [first_summary] = [m for m in bus.sender.messages if m.session_id == summary]
    assert first_summary.scheduled_enqueue_time_utc is not None
    first = messages[f"{CAMERA_ID}:store-0000"]
    assert first.session_id == "store-0000" and first.scheduled_enqueue_time_utc is None
    assert first.application_properties == {
        b"release_id": CAMERA_ID.encode(),
        b"site": b"store-0000",
        b"kind": b"FANOUT",
    } or {
        k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
        for k, v in (first.application_properties or {}).items()
    } == {"release_id": CAMERA_ID, "site": "store-0000", "kind": "FANOUT"}
    scheduled = messages[f"{CAMERA_ID}:plant-02"].scheduled_enqueue_time_utc
    assert scheduled == datetime(2026, 11, 25, 2, 5, tzinfo=UTC)  # the window opens at 02:00, checked 5 min later


def test_ingest_is_traced_with_the_ids_a_trace_search_needs(services: Services) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared import observability

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observability.use_tracer_provider(provider)
    try:
        deliver(services, load_event("eventgrid-image-pushed"))
    finally:
        observability.use_tracer_provider(None)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"acrsync.ingest.delivery", "acrsync.ingest.event"}
    event = spans["acrsync.ingest.event"]
    assert event.attributes["release_id"] == CAMERA_ID and event.attributes["digest"] == CAMERA_DIGEST
    assert event.parent is not None and event.parent.span_id == spans["acrsync.ingest.delivery"].context.span_id


def test_a_deletion_at_the_site_is_recorded_with_its_row_so_version_tags_see_it(services: Services) -> None:
    deliver(services, load_event("eventgrid-image-pushed"))
    before = services.store.release_version(CAMERA_ID)
    deleted = copy.deepcopy(load_event("eventgrid-connected-registry-image-pushed"))
    for event in deleted if isinstance(deleted, list) else [deleted]:
        event["id"] = "edge-deletion-1"
        event["eventType"] = "Microsoft.ContainerRegistry.ImageDeleted"
        event["data"]["action"] = "delete"
    assert deliver(services, deleted) == [IngestOutcome.EDGE_RECORDED]
    assert services.store.release_version(CAMERA_ID) != before  # the release's views change their ETag
    assert [e.summary for e in services.store.list_evidence(CAMERA_ID) if e.site == "plant-01"][-1:] == [
        "deleted at the site"
    ]
