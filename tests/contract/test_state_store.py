"""The state-store contract: every adapter (SQLite, Azure Table Storage on Azurite) passes the same tests."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.domain.changes import RowChange
from shared.domain.evidence_bundles import verify_bundle, verify_consistency
from shared.domain.ledger import LedgerFigures, figures_by_site
from shared.domain.links import LinkRate, RateSource, Transfer
from shared.domain.model import Site, SiteSync, TagPolicy, Versioned
from shared.domain.receipts import ReceiptSigner
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.domain.workloads import (
    MAX_PULL_ERRORS,
    MAX_REPORT_IDS,
    MAX_RUNNING_IMAGES,
    MAX_WORKLOADS_PER_IMAGE,
    ClusterConnectivity,
    DisconnectedPull,
    ExtensionHealth,
    ExtensionState,
    ObservationSource,
    PullError,
    RunningImage,
    SiteHealth,
    SiteRuntime,
    Workload,
    fit_runtime,
)
from shared.errors import AlreadyExists, ConcurrencyConflict, EntityTooLarge, InvalidInput, NotFound
from shared.ports import ROWS_PER_TRANSACTION, BatchSaved, RowWrite, StateStore
from shared.services.bundles import evidence_bundle
from shared.services.receipts import receipt_hook
from shared.services.rows import release_loader, update_row
from shared.services.summaries import summarize_release
from tests.builders import T0, make_evidence, make_release, make_row, make_site, random_digest, site_names
from tests.fakes import FakeClock

# -- sites ---------------------------------------------------------------------------------------


def test_sites_round_trip_with_every_field(store: StateStore) -> None:
    site = Site(
        name="plant-01",
        ring="ring1",
        critical=True,
        owner="Jürgen Łukasz <ops-plant01@contoso.example>",
        repositories=("inspection/*", "gateway"),
        tag_policy=TagPolicy(include=("1.*",), exclude=("latest",), semver_only=True),
        connected_registry="/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/connectedRegistries/plant-01",
        schedule="0 2 * * *",
        sync_window=timedelta(hours=3),
        message_ttl=timedelta(days=2),
        endpoint="https://plant01.contoso.example",
        cluster_id="/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/plant-01",
        log_analytics_workspace_id="6f1c2d3e-0000-4000-8000-00000000abcd",
        reporter=True,
        position=7,
        bandwidth_bps=2_000_000,
    )
    store.upsert_sites([site, make_site("mine-07")])
    assert store.get_site("plant-01") == site
    assert [s.name for s in store.list_sites()] == ["mine-07", "plant-01"]


def _runtime(site: str, *, images: int = 1) -> SiteRuntime:
    running = tuple(
        RunningImage(
            repository=f"inspection/camera-{index:02d}",
            digest=random_digest(),
            tags=("1.5.0",),
            workloads=(Workload("vision", "Deployment", f"camera-{index}", 2),),
            pods=2,
            first_seen_at=T0,
            last_seen_at=T0 + timedelta(minutes=5),
            source=ObservationSource.SITE_AGENT,
            release_id=None if index else "r" * 64,
        )
        for index in range(images)
    )
    return SiteRuntime(
        site=site,
        running=running,
        pull_errors=(PullError("x/y:1", "ImagePullBackOff", "Back-off pulling image", 3, T0, T0),),
        health=SiteHealth(
            cluster_connectivity=ClusterConnectivity.CONNECTED,
            extension=ExtensionHealth(ExtensionState.SUCCEEDED, "0.11.0", ()),
            tls_expires_at=T0 + timedelta(days=30),
            last_report_at=T0,
            disconnected_pull=DisconnectedPull.OK,
            disconnected_pull_checked_at=T0,
        ),
        snapshots={ObservationSource.SITE_AGENT: T0},
        report_ids=("report-0001",),
        updated_at=T0,
    )


def test_site_runtime_is_created_once_and_replaced_only_with_its_etag(store: StateStore) -> None:
    with pytest.raises(NotFound):
        store.get_site_runtime("plant-01")
    runtime = _runtime("plant-01")
    etag = store.save_site_runtime(runtime, etag=None)
    read = store.get_site_runtime("plant-01")
    assert read.value == runtime and read.etag == etag
    with pytest.raises(ConcurrencyConflict):
        store.save_site_runtime(runtime, etag=None)  # a second creator lost the race
    newer = replace(runtime, report_ids=("report-0001", "report-0002"))
    second = store.save_site_runtime(newer, etag=etag)
    with pytest.raises(ConcurrencyConflict):
        store.save_site_runtime(replace(runtime, report_ids=()), etag=etag)  # read before the write above
    assert store.get_site_runtime("plant-01") == Versioned(newer, second)
    assert [site.name for site in store.list_sites()] == []  # runtimes are not sites
    store.save_site_runtime(_runtime("mine-07"), etag=None)
    assert [runtime.site for runtime in store.list_site_runtimes()] == ["mine-07", "plant-01"]
    assert store.list_site_runtimes()[1] == newer


def test_the_largest_site_runtime_fits_one_document(store: StateStore) -> None:
    site = "s" * 63
    runtime = _runtime(site, images=MAX_RUNNING_IMAGES)
    long = "registry.contoso.example:5000/" + "a/" * 80 + "image:" + "t" * 100
    runtime = replace(
        runtime,
        running=tuple(
            replace(
                image,
                repository=image.repository + "/" + "r" * 180,
                tags=tuple("t" * 100 for _ in range(3)),
                workloads=tuple(
                    Workload("n" * 63, "StatefulSet", "w" * 63, 99) for _ in range(MAX_WORKLOADS_PER_IMAGE)
                ),
            )
            for image in runtime.running
        ),
        pull_errors=tuple(PullError(long, "ImagePullBackOff", "m" * 5000, 9, T0, T0) for _ in range(MAX_PULL_ERRORS)),
        report_ids=tuple(f"report-{index:0120d}" for index in range(MAX_REPORT_IDS)),
    )
    fitted = fit_runtime(runtime)
    assert 0 < len(fitted.running) < MAX_RUNNING_IMAGES and fitted.omitted_images == MAX_RUNNING_IMAGES - len(
        fitted.running
    )
    store.save_site_runtime(fitted, etag=None)
    assert store.get_site_runtime(site).value == fitted


def test_site_upsert_replaces_and_delete_is_idempotent(store: StateStore) -> None:
    store.upsert_sites([make_site("store-0042", ring="ring2")])
    store.upsert_sites([make_site("store-0042", ring="ring3")])
    assert store.get_site("store-0042").ring == "ring3"
    store.delete_site("store-0042")
    store.delete_site("store-0042")
    with pytest.raises(NotFound):
        store.get_site("store-0042")
    assert store.list_sites() == []


# -- releases ------------------------------------------------------------------------------------


def test_create_release_is_insert_once(store: StateStore) -> None:
    release = make_release()
    created = store.create_release(release)
    assert created.value == release and created.etag
    with pytest.raises(AlreadyExists):
        store.create_release(replace(release, tags=frozenset({"other"})))
    assert store.get_release(release.release_id).value.tags == frozenset({"1.4.2"})


def test_get_missing_release_raises_not_found(store: StateStore) -> None:
    with pytest.raises(NotFound):
        store.get_release("0" * 32)
    assert store.is_release_published("0" * 32) is False


def test_etag_conflict_two_writers_one_loses_and_retries(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    first = store.get_release(release.release_id)
    second = store.get_release(release.release_id)

    store.replace_release(first.value.with_event("ev-a", frozenset({"a"})), etag=first.etag)
    with pytest.raises(ConcurrencyConflict):
        store.replace_release(second.value.with_event("ev-b", frozenset({"b"})), etag=second.etag)

    fresh = store.get_release(release.release_id)  # the loser re-reads and retries
    store.replace_release(fresh.value.with_event("ev-b", frozenset({"b"})), etag=fresh.etag)
    final = store.get_release(release.release_id).value
    assert final.tags == {"1.4.2", "a", "b"}
    assert final.source_event_ids[-2:] == ("ev-a", "ev-b")


def test_replace_returns_the_etag_for_the_next_write(store: StateStore) -> None:
    release = make_release()
    etag = store.create_release(release).etag
    for tag in ("x", "y", "z"):
        etag = store.replace_release(
            store.get_release(release.release_id).value.with_event(tag, frozenset({tag})), etag=etag
        ).etag
    assert store.get_release(release.release_id).value.tags == {"1.4.2", "x", "y", "z"}


def test_oversize_release_is_refused_clearly_and_nothing_is_stored(store: StateStore) -> None:
    release = make_release(tags=frozenset(f"build-{i:06d}-" + "x" * 100 for i in range(400)))
    with pytest.raises(EntityTooLarge, match="limit"):
        store.create_release(release)
    with pytest.raises(NotFound):
        store.get_release(release.release_id)


# -- site-sync rows ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [100, 250])
def test_add_site_syncs_in_batches_is_idempotent(store: StateStore, count: int) -> None:
    release = make_release()
    store.create_release(release)
    rows = [make_row(release, site) for site in site_names(count)]
    assert store.add_site_syncs(rows) == count
    assert store.add_site_syncs(rows) == 0
    listed = store.list_site_syncs(release.release_id)
    assert [r.value.site for r in listed] == sorted(site_names(count))
    assert all(r.value.state is SyncState.PENDING and r.etag for r in listed)


def test_add_site_syncs_creates_only_missing_rows_and_keeps_progress(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    sites = site_names(130)
    store.add_site_syncs([make_row(release, s) for s in sites[:40]])
    progressed = store.get_site_sync(release.release_id, sites[0])
    moved = progressed.value.moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0 + timedelta(hours=1))
    store.save_site_sync(moved, etag=progressed.etag)

    assert store.add_site_syncs([make_row(release, s) for s in sites]) == 90
    assert len(store.list_site_syncs(release.release_id)) == 130
    assert store.get_site_sync(release.release_id, sites[0]).value.state is SyncState.VERIFIED


def test_rows_of_several_releases_stay_apart(store: StateStore) -> None:
    one, two = make_release(), make_release("retail/pos-api")
    for release in (one, two):
        store.create_release(release)
    store.add_site_syncs([make_row(one, "plant-01"), make_row(two, "plant-01"), make_row(two, "store-0001")])
    assert [r.value.site for r in store.list_site_syncs(one.release_id)] == ["plant-01"]
    assert [r.value.site for r in store.list_site_syncs(two.release_id)] == ["plant-01", "store-0001"]
    with pytest.raises(NotFound):
        store.get_site_sync(one.release_id, "store-0001")


def test_release_version_moves_with_every_write_of_the_release_and_only_then(store: StateStore) -> None:
    release, other = make_release(), make_release("retail/pos-api")
    for each in (release, other):
        store.create_release(each)
    with pytest.raises(NotFound):
        store.release_version("0" * 64)
    seen = [store.release_version(release.release_id)]

    store.add_site_syncs([make_row(release, "plant-01"), make_row(release, "plant-02")])
    seen.append(store.release_version(release.release_id))
    row = store.get_site_sync(release.release_id, "plant-02")
    store.save_site_sync(row.value.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0), etag=row.etag)
    seen.append(store.release_version(release.release_id))
    header = store.get_release(release.release_id)
    store.replace_release(header.value.with_event("late-tag", frozenset({"2.0"})), etag=header.etag)
    seen.append(store.release_version(release.release_id))
    rows = store.list_site_syncs(release.release_id)
    store.save_site_sync_batch([RowWrite(replace(r.value, checks=r.value.checks + 1), r.etag, r.value) for r in rows])
    seen.append(store.release_version(release.release_id))
    assert len(set(seen)) == len(seen)

    # Writes that change nothing leave it: rows that exist already, a batch that lost its race,
    # a save refused for a stale ETag.
    store.add_site_syncs([make_row(release, "plant-01")])
    assert store.save_site_sync_batch([RowWrite(rows[0].value, rows[0].etag, rows[0].value)]).refused == ("plant-01",)
    with pytest.raises(ConcurrencyConflict):
        store.save_site_sync(rows[1].value, etag=rows[1].etag)
    assert store.release_version(release.release_id) == seen[-1]

    # Another release's rows, evidence and reads leave it alone.
    store.add_site_syncs([make_row(other, "plant-01")])
    store.list_site_syncs(release.release_id)
    assert store.release_version(release.release_id) == seen[-1]


def test_save_site_sync_commits_row_counters_and_evidence_together(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01")])
    row = store.get_site_sync(release.release_id, "plant-01")
    header = store.get_release(release.release_id)
    at = T0 + timedelta(hours=12)
    moved = row.value.moved_to(
        SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, at, evidence_source=EvidenceSource.OCI_PROBE
    )
    evidence = make_evidence(moved, at=at, details={"Docker-Content-Digest": release.digest, "status": "200"})

    saved = store.save_site_sync(
        moved,
        etag=row.etag,
        evidence=[evidence],
        release=Versioned(header.value.with_count_moved(None, SyncState.VERIFIED), header.etag),
    )

    assert saved.row_etag and saved.release_etag
    assert store.get_site_sync(release.release_id, "plant-01").value == moved
    assert store.get_release(release.release_id).value.counts == {SyncState.VERIFIED: 1}
    assert store.list_evidence(release.release_id) == [evidence]


def test_save_with_a_stale_release_etag_writes_nothing(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01")])
    row = store.get_site_sync(release.release_id, "plant-01")
    header = store.get_release(release.release_id)
    store.replace_release(header.value.with_event("late-tag", frozenset({"2.0"})), etag=header.etag)  # someone else

    moved = row.value.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0 + timedelta(hours=1))
    with pytest.raises(ConcurrencyConflict):
        store.save_site_sync(
            moved,
            etag=row.etag,
            evidence=[make_evidence(moved, at=T0)],
            release=Versioned(header.value.with_count_moved(None, SyncState.SYNCED), header.etag),
        )
    assert store.get_site_sync(release.release_id, "plant-01").value.state is SyncState.PENDING
    assert store.list_evidence(release.release_id) == []
    assert store.get_release(release.release_id).value.counts == {}


def test_save_with_a_stale_row_etag_writes_nothing(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01")])
    stale = store.get_site_sync(release.release_id, "plant-01")
    winner = stale.value.moved_to(SyncState.WAITING_FOR_WINDOW, SyncReason.WINDOW_CLOSED, T0)
    store.save_site_sync(winner, etag=stale.etag)

    loser = stale.value.moved_to(SyncState.FAILED, SyncReason.SITE_NOT_FOUND, T0)
    with pytest.raises(ConcurrencyConflict):
        store.save_site_sync(loser, etag=stale.etag, evidence=[make_evidence(loser, at=T0, summary="gone")])
    assert store.get_site_sync(release.release_id, "plant-01").value.state is SyncState.WAITING_FOR_WINDOW
    assert store.list_evidence(release.release_id) == []


def test_concurrent_workers_lose_no_counter_update(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    sites = site_names(24)
    store.add_site_syncs([make_row(release, s) for s in sites])
    errors: list[BaseException] = []

    def work(mine: list[str]) -> None:
        try:
            for site in mine:
                while True:
                    row = store.get_site_sync(release.release_id, site)
                    header = store.get_release(release.release_id)
                    moved = row.value.moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0)
                    counted = header.value.with_count_moved(None, SyncState.VERIFIED)
                    try:
                        store.save_site_sync(moved, etag=row.etag, release=Versioned(counted, header.etag))
                        break
                    except ConcurrencyConflict:
                        continue
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(sites[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get_release(release.release_id).value.counts == {SyncState.VERIFIED: 24}


def test_rows_of_a_site_list_newest_release_first_across_pages(store: StateStore) -> None:
    releases = [make_release(pushed_at=T0 + timedelta(minutes=i)) for i in range(7)]
    for release in releases:
        store.create_release(release)
        store.add_site_syncs([make_row(release, "plant-01"), make_row(release, "plant-02")])
        row = store.get_site_sync(release.release_id, "plant-01")
        store.save_site_sync(row.value.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0), etag=row.etag)

    seen, token = [], None
    while True:
        page = store.list_site_syncs_for_site("plant-01", page_size=3, continuation=token)
        seen.extend(r.release_id for r in page.items)
        token = page.continuation
        if token is None:
            break
    assert seen == [r.release_id for r in reversed(releases)]
    assert store.list_site_syncs_for_site("plant-02").items == []  # never checked


# -- evidence ------------------------------------------------------------------------------------


def test_evidence_is_append_only_and_idempotent(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    row = make_row(release, "plant-01")
    later = make_evidence(
        row, at=T0 + timedelta(hours=2), summary="edge event", source=EvidenceSource.CONNECTED_REGISTRY_EVENT
    )
    earlier = make_evidence(row, at=T0 + timedelta(hours=1), details={"lastSyncTime": "2026-11-24T10:41:00Z"})
    other_site = make_evidence(make_row(release, "mine-07"), at=T0)

    assert store.append_evidence([later, earlier, other_site]) == 3
    assert store.append_evidence([earlier]) == 0
    assert store.list_evidence(release.release_id) == [other_site, earlier, later]
    assert store.list_evidence(release.release_id, site="plant-01") == [earlier, later]


def test_unicode_and_slashes_survive_every_field(store: StateStore) -> None:
    release = make_release("factory/line-3/vision.model_v2", tags=frozenset({"2026.11-rc.1"}))
    release = replace(release, actor="Zoë Ångström 🚀")
    store.create_release(release)
    row = make_row(release, "plant-01")
    ev = make_evidence(row, at=T0, summary="Ärger? #1 / ok \\ 100% — 東京", details={"path/with#chars?": "värde/ü"})
    store.add_site_syncs([row])
    store.append_evidence([ev])
    assert store.get_release(release.release_id).value.actor == "Zoë Ångström 🚀"
    assert store.get_site_sync(release.release_id, "plant-01").value.repository == "factory/line-3/vision.model_v2"
    assert store.list_evidence(release.release_id) == [ev]


# -- listing releases ----------------------------------------------------------------------------


def _publish(store: StateStore, release_count: int) -> list[str]:
    ids = []
    for i in range(release_count):
        repository = "inspection/camera" if i % 2 == 0 else "retail/pos-api"
        release = make_release(
            repository,
            tags=frozenset({f"1.{i}.0"} | ({"stable"} if i % 3 == 0 else set())),
            pushed_at=T0 + timedelta(minutes=i),
        )
        store.create_release(release)
        store.publish_release(release)
        ids.append(release.release_id)
    return ids


def test_list_releases_pages_newest_first_without_gaps(store: StateStore) -> None:
    ids = _publish(store, 25)
    seen, token, pages = [], None, 0
    while True:
        page = store.list_releases(page_size=10, continuation=token)
        pages += 1
        seen.extend(r.release_id for r in page.items)
        token = page.continuation
        if token is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


def test_list_releases_filters(store: StateStore) -> None:
    ids = _publish(store, 12)
    camera = store.list_releases(repository="inspection/camera", page_size=50).items
    assert [r.release_id for r in camera] == [ids[i] for i in (10, 8, 6, 4, 2, 0)]
    stable = store.list_releases(tag="stable", page_size=2)
    assert [r.release_id for r in stable.items] == [ids[9], ids[6]] and stable.continuation
    rest = store.list_releases(tag="stable", page_size=2, continuation=stable.continuation)
    assert [r.release_id for r in rest.items] == [ids[3], ids[0]]
    one = store.get_release(ids[5]).value
    assert [r.release_id for r in store.list_releases(digest=one.digest).items] == [ids[5]]
    assert store.list_releases(digest=random_digest()).items == []


def test_unpublished_releases_are_not_listed(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    assert store.list_releases().items == []
    assert not store.is_release_published(release.release_id)
    store.publish_release(release)
    store.publish_release(release)
    assert [r.release_id for r in store.list_releases().items] == [release.release_id]
    assert store.is_release_published(release.release_id)


def test_publish_refreshes_the_listed_tags(store: StateStore) -> None:
    release = make_release(tags=frozenset({"1.0.0"}))
    store.create_release(release)
    store.publish_release(release)
    current = store.get_release(release.release_id)
    retagged = store.replace_release(current.value.with_event("e2", frozenset({"stable"})), etag=current.etag).value
    store.publish_release(retagged)
    assert [r.release_id for r in store.list_releases(tag="stable").items] == [release.release_id]
    assert len(store.list_releases().items) == 1


@pytest.mark.parametrize("token", ["garbage", "eyJwIjp7fSwiZiI6Inh4In0", "", "%%%"])
def test_foreign_continuation_tokens_are_refused(store: StateStore, token: str) -> None:
    _publish(store, 3)
    with pytest.raises(InvalidInput) as info:
        store.list_releases(page_size=1, continuation=token or "x")
    assert info.value.code == "INVALID_CONTINUATION"


def test_continuation_is_bound_to_its_filters(store: StateStore) -> None:
    _publish(store, 6)
    token = store.list_releases(repository="inspection/camera", page_size=1).continuation
    assert token
    with pytest.raises(InvalidInput):
        store.list_releases(repository="retail/pos-api", page_size=1, continuation=token)


# -- fleet scale: the due index, per-site chains and checkpoints racing transitions ---------------


def test_the_due_index_follows_every_write(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    pending = replace(make_row(release, "plant-01"), next_check_at=T0 + timedelta(hours=2))
    later = replace(make_row(release, "plant-02"), next_check_at=T0 + timedelta(hours=5))
    final = make_row(release, "plant-03", state=SyncState.SKIPPED)
    store.add_site_syncs([pending, later, final])
    release_id = release.release_id

    def due(at: timedelta) -> list[str]:
        return [v.value.site for v in store.list_due_site_syncs(release_id, due_by=T0 + at)]

    assert due(timedelta(hours=1)) == []
    assert due(timedelta(hours=2)) == ["plant-01"]  # at or before: inclusive
    assert due(timedelta(hours=6)) == ["plant-01", "plant-02"]  # a skipped row is never due
    assert due(timedelta(days=2)) == ["plant-01", "plant-02"]
    # Arrived: never due again. Rescheduled: due at its new time. Both with the row's own write.
    current = store.get_site_sync(release_id, "plant-01")
    arrived = current.value.moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0 + timedelta(hours=2))
    store.save_site_sync(replace(arrived, next_check_at=None), etag=current.etag)
    current = store.get_site_sync(release_id, "plant-02")
    store.save_site_sync(replace(current.value, next_check_at=T0 + timedelta(days=3)), etag=current.etag)
    assert due(timedelta(hours=12)) == []
    # A day after the push a row on its way is due whatever its next check says (the shortest TTL).
    [row] = store.list_due_site_syncs(release_id, due_by=T0 + timedelta(days=1))
    assert row.value.site == "plant-02" and row.etag == store.get_site_sync(release_id, "plant-02").etag


def test_the_site_ledger_keeps_each_sites_figures_from_its_seed_on(store: StateStore) -> None:
    early, late = make_release(), replace(make_release(), digest=random_digest(), pushed_at=T0 + timedelta(days=1))
    for release in (early, late):
        store.create_release(release)
    fanned = [
        replace(make_row(early, "plant-01"), in_ledger=True),
        replace(make_row(early, "plant-02", state=SyncState.SKIPPED), in_ledger=True),  # out of scope
        make_row(early, "plant-03"),  # a row from before the ledger: counted from the rows instead
        replace(make_row(late, "plant-01"), in_ledger=True),
    ]
    store.add_site_syncs(fanned)
    assert store.list_ledger(pushed_from=T0 - timedelta(hours=1), pushed_until=T0 + timedelta(days=2)) == []
    store.seed_ledger(fanned)  # what the first release summary does, off the fan-out's path

    def figures(since: datetime) -> dict[str, LedgerFigures]:
        days = store.list_ledger(pushed_from=since, pushed_until=T0 + timedelta(days=2))
        return figures_by_site(days, since)

    found = figures(T0 - timedelta(hours=1))
    assert sorted(found) == ["plant-01"] and (found["plant-01"].received, found["plant-01"].ready) == (2, 0)
    # The row's own save keeps its figures current: arrived after 90 s, stale twice before.
    current = store.get_site_sync(early.release_id, "plant-01")
    row = current.value.moved_to(SyncState.STALE, SyncReason.WINDOW_MISSED, T0 + timedelta(seconds=30))
    row = row.moved_to(SyncState.PENDING, SyncReason.OPERATOR_RETRY, T0 + timedelta(seconds=40))
    row = row.moved_to(SyncState.STALE, SyncReason.SITE_SILENT, T0 + timedelta(seconds=50))
    row = row.moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0 + timedelta(seconds=90))
    saved = store.save_site_sync(row, etag=current.etag, previous=current.value)
    plant = figures(T0 - timedelta(hours=1))["plant-01"]
    assert (plant.received, plant.ready, plant.stale_incidents, plant.windows_missed) == (
        2,
        1,
        1,
        1,
    )  # retried and straight back to stale: one incident
    lag = plant.lag_percentile(0.5)
    assert lag is not None and abs(lag - 90) <= 90 * 0.025
    # Saving it again, fanning it out again and seeding again count nothing twice, and a seed keeps
    # the entry a save wrote since.
    store.save_site_sync(replace(row, checks=row.checks + 1), etag=saved.row_etag, previous=row)
    assert store.add_site_syncs([replace(make_row(early, "plant-01"), in_ledger=True)]) == 0
    store.seed_ledger(fanned)
    assert figures(T0 - timedelta(hours=1))["plant-01"].as_dict() == plant.as_dict()
    # By push time: a period starting mid-day counts the entries pushed after its start; one
    # starting at midnight counts the whole day.
    assert figures(T0 + timedelta(hours=1))["plant-01"].received == 1
    midnight = T0.replace(hour=0, minute=0, second=0, microsecond=0)
    assert figures(midnight)["plant-01"].received == 2


def test_a_batch_save_writes_whole_chunks_and_hands_back_those_that_lost_a_race(store: StateStore) -> None:
    release, other = make_release(), make_release("retail/pos-api")
    for each in (release, other):
        store.create_release(each)
    sites = site_names(250)
    store.add_site_syncs([replace(make_row(release, site), in_ledger=True) for site in sites])
    store.add_site_syncs([make_row(other, sites[0])])
    store.seed_ledger([replace(make_row(release, site), in_ledger=True) for site in sites])
    # One row arrived before it is planned: its delivered bytes enter the report with the batch.
    first = store.get_site_sync(release.release_id, sites[0])
    arrived = first.value.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0 + timedelta(minutes=5))
    store.save_site_sync(arrived, etag=first.etag, previous=first.value)
    read = store.list_site_syncs(release.release_id)
    # A check moves a row of the second chunk after the planner read it.
    racing = store.get_site_sync(release.release_id, sites[150])
    store.save_site_sync(replace(racing.value, checks=racing.value.checks + 1), etag=racing.etag)

    transfer = Transfer((3_000, 1_000), LinkRate(2_000_000.0, RateSource.DECLARED))
    writes = [RowWrite(replace(row.value, transfer=transfer), row.etag, row.value) for row in read]
    result = store.save_site_sync_batch(writes)

    chunk = ROWS_PER_TRANSACTION
    assert result.refused == tuple(sites[chunk : 2 * chunk])  # the chunk that holds the moved row
    assert result.saved == tuple(sites[:chunk] + sites[2 * chunk :])
    stored = {row.value.site: row.value for row in store.list_site_syncs(release.release_id)}
    assert all(stored[site].transfer == transfer for site in result.saved)
    assert all(stored[site].transfer is None for site in result.refused)
    assert stored[sites[150]].checks == racing.value.checks + 1
    days = store.list_ledger(pushed_from=T0 - timedelta(hours=1), pushed_until=T0 + timedelta(days=1))
    assert figures_by_site(days, T0 - timedelta(hours=1))[sites[0]].bytes_delivered == 4_000

    # The rows' new ETags take the next write; the ones read before are refused, and so is a gone row.
    again = store.save_site_sync_batch(writes[:3])
    assert (again.saved, again.refused) == ((), tuple(sites[:3]))
    gone = RowWrite(make_row(release, "plant-gone"), read[0].etag, make_row(release, "plant-gone"))
    assert store.save_site_sync_batch([gone]).refused == ("plant-gone",)
    with pytest.raises(InvalidInput) as refused:
        store.save_site_sync_batch([writes[0], RowWrite(make_row(other, sites[0]), read[0].etag, read[0].value)])
    assert refused.value.code == "CROSS_RELEASE_WRITE"
    assert store.save_site_sync_batch([]) == BatchSaved()


class _Sink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, events: Sequence[Any]) -> None:
        self.events.extend(events)


@dataclass
class _Services:
    """What the row-change, receipt, summary and bundle services read, around the store under test."""

    store: StateStore
    signer: ReceiptSigner
    clock: FakeClock
    events: _Sink = field(default_factory=_Sink)
    content_reader: None = None  # nothing weighs releases here


def test_many_sites_of_one_release_move_at_once_with_checkpoints_and_summaries_racing(store: StateStore) -> None:
    release = make_release()
    store.create_release(release)
    sites = site_names(48)
    store.add_site_syncs([make_row(release, s) for s in sites])
    services = _Services(store, ReceiptSigner(Ed25519PrivateKey.generate()), FakeClock(T0 + timedelta(minutes=5)))
    release_id, loader = release.release_id, release_loader(store, release.release_id)
    sign = receipt_hook(services, None, loader)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    bundles: list[dict[str, Any]] = []
    done = threading.Event()

    def arrive(row: SiteSync, state: SyncState) -> RowChange | None:
        if row.state is state or (state is SyncState.SYNCED and row.state is SyncState.VERIFIED):
            return None
        moved = row.moved_to(state, SyncReason.MANIFEST_PRESENT, T0 + timedelta(minutes=1))
        return RowChange(moved, [make_evidence(moved, at=T0 + timedelta(minutes=1), summary=state.value)])

    def work(mine: list[str]) -> None:
        try:
            for site in mine:
                for state in (SyncState.SYNCED, SyncState.VERIFIED):
                    update = update_row(store, release_id, site, lambda r, s=state: arrive(r, s), on_state_change=sign)
                    assert update.changed
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)

    def audit() -> None:
        try:
            while not done.is_set():
                bundles.append(evidence_bundle(services, release_id))  # type: ignore[arg-type]
                summarize_release(services, release_id)  # type: ignore[arg-type]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    auditor = threading.Thread(target=audit)
    auditor.start()
    workers = [threading.Thread(target=work, args=(sites[i::8],)) for i in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    done.set()
    auditor.join()
    assert errors == []
    bundles.append(evidence_bundle(services, release_id))  # type: ignore[arg-type]
    summarize_release(services, release_id)  # type: ignore[arg-type]

    rows = [v.value for v in store.list_site_syncs(release_id)]
    assert [(r.state, r.receipt_sequence) for r in rows] == [(SyncState.VERIFIED, 2)] * 48  # no update lost
    assert store.get_release(release_id).value.counts == {SyncState.VERIFIED: 48}  # exact, from the rows
    # Every checkpoint issued during the race is a consistent snapshot, and each one extends the last.
    checked = [verify_bundle(bundle, public_key=services.signer.public_key) for bundle in bundles]
    assert len(checked) >= 2 and checked[-1].receipts == 96 and checked[-1].sites == tuple(sites)
    for older, newer in itertools.pairwise(checked):
        verify_consistency(newer, older)
    assert [e.type.value for e in services.events.events] == ["acrsync.release.ready"]
