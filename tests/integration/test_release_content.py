"""What a release weighs, read from a real registry (Debian's docker-registry over TLS) with the real
``azure-containerregistry`` client: shared base layers count once, an index resolves to its platforms,
and a second release needs only its new layers at a site that holds the first."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.parent_registry import ParentRegistryContentReader
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap
from shared.config import Settings
from shared.domain.content import release_content
from shared.domain.observations import OutboundEventType
from shared.domain.states import SyncReason, SyncState
from shared.domain.windows import window_at_or_after
from shared.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable
from shared.local.content import SyntheticContentReader
from shared.ports import BatchSaved, RowWrite
from shared.services import status
from shared.services.report import site_report
from shared.services.summaries import summarize_release
from tests.builders import T0, make_site, move_row, push_release
from tests.fakes import CountingSink, FakeClock
from tests.support.azurite import free_port
from tests.support.registry import (
    oci_layout,
    push_index,
    push_layers,
    self_signed_certificate,
    skopeo_inspect,
    skopeo_push,
    start_registry,
)

# azure-containerregistry 1.2 leaves a by-digest manifest read's pooled socket for the garbage collector
# after close(); a long-lived reader (one per process) never closes, so only these tests see it.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
BASE = [secrets.token_bytes(40_000), secrets.token_bytes(25_000)]  # the shared base image's layers


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    directory = tmp_path_factory.mktemp("parent")
    cert, key, _ = self_signed_certificate(directory, days=30)
    with start_registry(directory / "registry", tls=(cert, key)) as handle:
        yield handle.url, str(cert)


@pytest.fixture
def reader(registry: tuple[str, str]) -> Iterator[ParentRegistryContentReader]:
    url, cert = registry
    made = ParentRegistryContentReader(url, None, connection_verify=cert)
    yield made
    made.close()


def test_size_counts_config_and_layers_and_a_second_release_needs_only_its_own(
    registry: tuple[str, str], reader: ParentRegistryContentReader
) -> None:
    url, cert = registry
    trust = ssl.create_default_context(cafile=cert)
    own_one, own_two = secrets.token_bytes(7_000), secrets.token_bytes(9_000)
    first = push_layers(url, "vision/detector", "1.0", [*BASE, own_one], verify=trust)
    second = push_layers(url, "vision/detector", "1.1", [*BASE, own_two], verify=trust)

    one = reader.read_content("vision/detector", first.digest)
    two = reader.read_content("vision/detector", second.digest)
    config = one.blobs[0].size
    assert one.layers == 3 and len(one.blobs) == 4
    assert one.size_bytes == config + 40_000 + 25_000 + 7_000
    held = [blob.digest for blob in one.blobs]
    assert two.needed_by(held) == two.blobs[0].size + 9_000  # its config and its own layer, not the base


def test_an_index_resolves_to_its_platforms_and_shared_blobs_count_once(
    registry: tuple[str, str], reader: ParentRegistryContentReader
) -> None:
    url, cert = registry
    trust = ssl.create_default_context(cafile=cert)
    amd = push_layers(url, "vision/multi", "amd64", [*BASE, secrets.token_bytes(3_000)], verify=trust)
    arm = push_layers(
        url, "vision/multi", "arm64", [*BASE, secrets.token_bytes(5_000)], architecture="arm64", verify=trust
    )
    index = push_index(url, "vision/multi", "2.0", [amd, arm], platforms=["amd64", "arm64"], verify=trust)

    content = reader.read_content("vision/multi", index.digest)
    assert content.platforms == ("linux/amd64", "linux/arm64")
    assert content.layers == 4  # two shared base layers, one own layer each
    sizes = sorted(blob.size for blob in content.blobs)
    assert sum(sizes) == content.size_bytes and 40_000 in sizes and sizes.count(40_000) == 1


def test_failures_say_whether_to_retry(registry: tuple[str, str], reader: ParentRegistryContentReader) -> None:
    _, cert = registry
    with pytest.raises(UpstreamRejected):
        reader.read_content("vision/detector", "sha256:" + "0" * 64)  # not there
    gone = ParentRegistryContentReader(f"https://127.0.0.1:{free_port()}", None, connection_verify=cert)
    with pytest.raises(UpstreamUnavailable):
        gone.read_content("vision/detector", "sha256:" + "0" * 64)
    gone.close()
    with pytest.raises(InvalidInput):
        release_content([("", {"layers": []})])  # an artifact with no config is no image to weigh


def test_the_summary_weighs_a_release_once_and_a_registry_that_fails_blocks_nothing(
    registry: tuple[str, str], tmp_path: Path
) -> None:
    url, cert = registry
    image = push_layers(
        url,
        "inspection/camera",
        "3.0",
        [*BASE, secrets.token_bytes(11_000)],
        verify=ssl.create_default_context(cafile=cert),
    )
    store = SqliteStateStore(tmp_path / "state.db")
    store.upsert_sites([make_site("plant-01"), make_site("plant-02")])
    reader = ParentRegistryContentReader(url, None, connection_verify=cert)
    gone = ParentRegistryContentReader(f"https://127.0.0.1:{free_port()}", None, connection_verify=cert)
    try:
        for content_reader, expected in ((gone, None), (reader, image)):
            services = bootstrap(
                Settings(data_dir=tmp_path),
                store=store,
                queue=SqliteJobQueue(tmp_path / "q.db"),
                events=CountingSink(),
                content_reader=content_reader,
            )
            release_id = push_release(services, "inspection/camera", "3.0", digest=image.digest, at=T0)
            summarize_release(services, release_id)
            release = status.release_detail(services, release_id)
            assert len(release["sites"]) == 2  # fan-out went ahead either way
            if expected is None:
                assert (release["size_bytes"], release["size_unknown_reason"]) == (None, "MANIFEST_UNREADABLE")
            else:  # the next summary reads again, and this time the registry answers
                assert release["size_bytes"] == sum(
                    b.size for b in reader.read_content("inspection/camera", image.digest).blobs
                )
                assert (release["layers"], release["size_unknown_reason"]) == (3, None)
                assert release["size_bytes"] > 40_000 + 25_000 + 11_000
            services.queue.close()
    finally:
        reader.close()
        gone.close()


def test_each_site_needs_what_it_does_not_hold_and_a_slow_link_is_told_at_push_time(
    registry: tuple[str, str], tmp_path: Path
) -> None:
    url, cert = registry
    trust = ssl.create_default_context(cafile=cert)
    own_one, own_two = secrets.token_bytes(7_000), secrets.token_bytes(9_000)
    first = push_layers(url, "haulage/planner", "1.0", [*BASE, own_one], verify=trust)
    second = push_layers(url, "haulage/planner", "1.1", [*BASE, own_two], verify=trust)
    store = SqliteStateStore(tmp_path / "state.db")
    nightly = {"schedule": "0 22 * * *", "sync_window": timedelta(hours=1), "repositories": ("haulage/*",)}
    # 100 bit/s carries 45,000 bytes an hour: the base's 40,000-byte layer tonight, the rest tomorrow.
    store.upsert_sites([make_site("plant-01", **nightly), make_site("camp-01", bandwidth_bps=100.0, **nightly)])
    reader = ParentRegistryContentReader(url, None, connection_verify=cert)
    events = CountingSink()
    clock = FakeClock(T0)
    services = bootstrap(
        Settings(data_dir=tmp_path),
        store=store,
        queue=SqliteJobQueue(tmp_path / "q.db"),
        events=events,
        clock=clock,
        content_reader=reader,
    )
    try:
        one = push_release(services, "haulage/planner", "1.0", digest=first.digest, at=T0)
        summarize_release(services, one)
        move_row(services, one, "plant-01", SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at=T0)
        delivered = {entry["site"]: entry["bytes_delivered"] for entry in site_report(services, "1d")["value"]}
        weight = reader.read_content("haulage/planner", first.digest).size_bytes
        assert delivered == {"camp-01": 0, "plant-01": weight}  # what arrived, as the report counts it
        clock.current = T0 + timedelta(hours=1)
        two = push_release(services, "haulage/planner", "1.1", digest=second.digest, at=clock.current)
        summarize_release(services, two)

        content = reader.read_content("haulage/planner", second.digest)
        sites = {row["site"]: row for row in status.release_detail(services, two)["sites"]}
        assert sites["plant-01"]["bytes_needed"] == content.blobs[0].size + 9_000  # its config and own layer
        assert sites["camp-01"]["bytes_needed"] == content.size_bytes  # it holds nothing of the first
        assert sites["plant-01"]["link"] is None and sites["plant-01"]["reason"] == "WINDOW_CLOSED"
        camp = sites["camp-01"]
        assert camp["link"] == {"bits_per_second": 100.0, "source": "declared"}
        assert camp["reason"] == "EXCEEDS_WINDOW"
        tonight = window_at_or_after("0 22 * * *", timedelta(hours=1), clock.current)
        assert datetime.fromisoformat(camp["expected_ready_at"]) > tonight.closes_at + timedelta(hours=22)
        wont_fit = [e for e in events.events if e.type is OutboundEventType.SITE_WONT_FIT]
        assert [(e.event_id, e.data["bytes_needed"]) for e in wont_fit] == [
            (f"{one}:camp-01:wont_fit", reader.read_content("haulage/planner", first.digest).size_bytes),
            (f"{two}:camp-01:wont_fit", content.size_bytes),
        ]

        summarize_release(services, two)  # a redelivered summary plans nothing again
        assert len([e for e in events.events if e.type is OutboundEventType.SITE_WONT_FIT]) == 2
    finally:
        services.queue.close()
        reader.close()


class _CheckRacesThePlanner(SqliteStateStore):
    """A store in which a site's check saves its row between the planner's read and its batch write."""

    racing_site = "camp-02"

    def save_site_sync_batch(self, writes: Sequence[RowWrite]) -> BatchSaved:
        release_id = writes[0].row.release_id
        current = self.get_site_sync(release_id, self.racing_site)
        self.save_site_sync(replace(current.value, checks=current.value.checks + 1), etag=current.etag)
        return super().save_site_sync_batch(writes)


def test_planning_writes_the_rows_in_batches_and_redoes_a_chunk_a_check_raced(tmp_path: Path) -> None:
    store = _CheckRacesThePlanner(tmp_path / "state.db")
    nightly = {"schedule": "0 22 * * *", "sync_window": timedelta(hours=1), "repositories": ("haulage/*",)}
    slow = {"bandwidth_bps": 100.0, **nightly}  # nothing of a few MB fits an hour at 100 bit/s
    store.upsert_sites([make_site(f"camp-{i:02d}", **slow) for i in range(1, 121)] + [make_site("plant-01", **nightly)])
    events = CountingSink()
    services = bootstrap(
        Settings(data_dir=tmp_path),
        store=store,
        queue=SqliteJobQueue(tmp_path / "q.db"),
        events=events,
        clock=FakeClock(T0),
        content_reader=SyntheticContentReader(),
    )
    try:
        release = push_release(services, "haulage/planner", "1.0", at=T0)
        summarize_release(services, release)
        rows = {row["site"]: row for row in status.release_detail(services, release)["sites"]}
        camps = [row for site, row in rows.items() if site != "plant-01"]
        assert len(camps) == 120 and all(row["bytes_needed"] and row["reason"] == "EXCEEDS_WINDOW" for row in camps)
        assert rows["plant-01"]["bytes_needed"] and rows["plant-01"]["reason"] == "WINDOW_CLOSED"
        # The raced site kept its check's write and got its transfer on top of it.
        raced = store.get_site_sync(release, "camp-02").value
        assert raced.checks == 1 and raced.transfer is not None
        wont_fit = sorted(e.event_id for e in events.events if e.type is OutboundEventType.SITE_WONT_FIT)
        assert wont_fit == sorted(f"{release}:camp-{i:02d}:wont_fit" for i in range(1, 121))
    finally:
        services.queue.close()


def test_an_image_copied_with_skopeo_weighs_what_skopeo_reports_and_brings_its_annotations(
    registry: tuple[str, str], reader: ParentRegistryContentReader, tmp_path: Path
) -> None:
    url, _ = registry
    own = secrets.token_bytes(13_000)
    oci = {
        "org.opencontainers.image.source": "https://github.com/contoso/vision",
        "org.opencontainers.image.revision": "4f1c2e9d0b7a",
        "org.opencontainers.image.created": "2026-11-30T08:00:00Z",
        "org.opencontainers.image.version": "2.4.0",
        "org.opencontainers.image.title": "not read",
    }
    layout = oci_layout(tmp_path / "build", "2.4.0", [*BASE, own], annotations=oci)
    digest = skopeo_push(layout, "2.4.0", url, "vision/skopeo")

    # What skopeo reads back from the registry: the layers, and the manifest with their sizes.
    inspected = skopeo_inspect(url, "vision/skopeo", "2.4.0")
    manifest = skopeo_inspect(url, "vision/skopeo", "2.4.0", raw=True)
    content = reader.read_content("vision/skopeo", digest)
    assert content.size_bytes == manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    assert content.layers == len(inspected["Layers"]) == 3
    assert dict(content.annotations) == {
        "source": "https://github.com/contoso/vision",
        "revision": "4f1c2e9d0b7a",
        "created": "2026-11-30T08:00:00Z",
        "version": "2.4.0",
    }
