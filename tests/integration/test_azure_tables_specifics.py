"""What only the Table Storage adapter has: its entity layout, transactions, paging and error translation.

The behaviour both adapters share is in tests/contract/test_state_store.py; these tests look at the
tables underneath, on a real Azurite started for this module.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.data.tables import TableServiceClient

from shared.adapters import azure_tables
from shared.adapters.azure_tables import AzureTableStore
from shared.adapters.codec import inverted_time_key
from shared.domain.model import Versioned
from shared.domain.states import SyncReason, SyncState
from shared.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    ConfigurationError,
    EntityTooLarge,
    InvalidInput,
    NotFound,
    StoreRejected,
    StoreUnavailable,
)
from tests.builders import T0, make_evidence, make_release, make_row, site_names
from tests.support.azurite import AzuriteHandle, connection_string_for, free_port, start_azurite

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteHandle]:
    handle = start_azurite(tmp_path_factory.mktemp("azurite-specifics"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def service(server: AzuriteHandle) -> Iterator[TableServiceClient]:
    """A plain SDK client to look at the raw entities the adapter wrote."""
    client = TableServiceClient.from_connection_string(server.connection_string)
    try:
        yield client
    finally:
        client.close()


class RequestCounter:
    """Counts the HTTP requests a store sends (azure-core's ``raw_request_hook``)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: Any) -> None:
        http = request.http_request
        self.requests.append((http.method, http.url))

    def reset(self) -> None:
        self.requests.clear()


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


@pytest.fixture
def store(server: AzuriteHandle, counter: RequestCounter) -> Iterator[AzureTableStore]:
    backend = AzureTableStore.from_connection_string(
        server.connection_string, table_prefix="s" + secrets.token_hex(5), raw_request_hook=counter
    )
    backend.ensure_tables()
    counter.reset()
    try:
        yield backend
    finally:
        backend.close()


def _entities(service: TableServiceClient, store: AzureTableStore, logical: str, pk: str) -> dict[str, Any]:
    table = service.get_table_client(store.table_names[logical])
    return {e["RowKey"]: e for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": pk})}


# -- tables and layout ---------------------------------------------------------------------------


def test_tables_are_created_with_the_prefix(server: AzuriteHandle, service: TableServiceClient) -> None:
    prefix = "p" + secrets.token_hex(4)
    store = AzureTableStore.from_connection_string(server.connection_string, table_prefix=prefix)
    try:
        store.ensure_tables()
        store.ensure_tables()  # idempotent
        names = {t.name for t in service.list_tables() if t.name.startswith(prefix)}
        assert names == {
            f"{prefix}sites",
            f"{prefix}releases",
            f"{prefix}releaseindex",
            f"{prefix}siteindex",
            f"{prefix}siteledger",
        }
    finally:
        store.close()


@pytest.mark.parametrize("prefix", ["1abc", "acr-sync", "x" * 60])
def test_a_prefix_giving_invalid_table_names_is_a_configuration_error(server: AzuriteHandle, prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="table_prefix"):
        AzureTableStore.from_connection_string(server.connection_string, table_prefix=prefix)


def test_a_malformed_connection_string_is_a_configuration_error_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        AzureTableStore.from_connection_string("AccountKey=c2VjcmV0;nonsense")
    assert "c2VjcmV0" not in str(info.value)


def test_entity_layout(store: AzureTableStore, service: TableServiceClient) -> None:
    release = make_release("factory/line-3/vision")
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01"), make_row(release, "plant-02")])
    row = store.get_site_sync(release.release_id, "plant-01")
    moved = row.value.moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0 + timedelta(hours=1))
    evidence = make_evidence(moved, at=T0 + timedelta(hours=1))
    store.save_site_sync(moved, etag=row.etag, evidence=[evidence])
    store.publish_release(release)

    partition = _entities(service, store, "releases", release.release_id)
    observed = "2026-11-24T10:41:12.000000Z"
    assert set(partition) == {
        "release",
        "release|version",
        "s|plant-01",
        "s|plant-02",
        f"e|plant-01|{observed}|{evidence.evidence_id}",
    }
    header = partition["release"]
    assert (header["repository"], header["digest"]) == (release.repository, release.digest)
    assert json.loads(header["doc"])["repository"] == "factory/line-3/vision"
    assert partition["s|plant-01"]["state"] == "VERIFIED"
    assert partition["s|plant-02"]["state"] == "PENDING"

    index_rk = f"{inverted_time_key(release.pushed_at)}|{release.release_id}"
    index = _entities(service, store, "releaseindex", "all")
    assert set(index) == {index_rk}
    assert json.loads(index[index_rk]["tags"]) == ["1.4.2"]
    assert index[index_rk]["repository"] == release.repository

    # Only the saved row is in the per-site index; fan-out alone does not put rows there.
    assert set(_entities(service, store, "siteindex", "plant-01")) == {index_rk}
    assert _entities(service, store, "siteindex", "plant-02") == {}


def test_save_site_sync_is_one_transaction_plus_the_site_index_and_ledger(
    store: AzureTableStore, counter: RequestCounter
) -> None:
    release = make_release()
    store.create_release(release)
    fanned = [replace(make_row(release, "plant-01"), in_ledger=True)]
    store.add_site_syncs(fanned)
    store.seed_ledger(fanned)  # as the release's first summary does
    row = store.get_site_sync(release.release_id, "plant-01")
    header = store.get_release(release.release_id)
    moved = row.value.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0 + timedelta(hours=1))
    evidence = [make_evidence(moved, at=T0 + timedelta(minutes=m), summary=f"check {m}") for m in range(5)]

    counter.reset()
    saved = store.save_site_sync(
        moved,
        etag=row.etag,
        evidence=evidence,
        release=Versioned(header.value.with_count_moved(None, SyncState.SYNCED), header.etag),
        previous=row.value,
    )

    methods = [(method, url.split("?")[0].rsplit("/", 1)[-1]) for method, url in counter.requests]
    assert methods[0] == ("POST", "$batch")
    # The batch, then the site-index upsert, then the row's entry in the site ledger (it arrived, so
    # the report's figures changed): a point read of the site's ledger and a write conditional on it.
    ledger = f"{store.table_names['siteledger']}(PartitionKey='2026-11-24',RowKey='plant-01')"
    assert methods[1][0] == "PUT" and methods[2:] == [("GET", ledger), ("PUT", ledger)]
    assert saved.row_etag == store.get_site_sync(release.release_id, "plant-01").etag
    assert saved.release_etag == store.get_release(release.release_id).etag
    # A save that leaves the figures as they were (one more check, still synced) skips the ledger.
    again = store.get_site_sync(release.release_id, "plant-01")
    counter.reset()
    store.save_site_sync(replace(again.value, checks=again.value.checks + 1), etag=again.etag, previous=again.value)
    assert [method for method, _ in counter.requests] == ["POST", "PUT"]


def test_a_stale_header_etag_leaves_row_evidence_and_index_untouched(
    store: AzureTableStore, service: TableServiceClient
) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01")])
    row = store.get_site_sync(release.release_id, "plant-01")
    stale_header = store.get_release(release.release_id)
    store.replace_release(stale_header.value.with_event("other-writer"), etag=stale_header.etag)
    before = _entities(service, store, "releases", release.release_id)

    moved = row.value.moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0)
    with pytest.raises(ConcurrencyConflict):
        store.save_site_sync(
            moved,
            etag=row.etag,  # still current: only the header precondition fails
            evidence=[make_evidence(moved, at=T0), make_evidence(moved, at=T0, summary="second")],
            release=Versioned(stale_header.value.with_count_moved(None, SyncState.VERIFIED), stale_header.etag),
        )

    after = _entities(service, store, "releases", release.release_id)
    assert set(after) == set(before) == {"release", "release|version", "s|plant-01"}  # no evidence appeared
    assert after["release|version"]["token"] == before["release|version"]["token"]  # nor a new version
    assert after["s|plant-01"].metadata["etag"] == row.etag  # the row was not written
    assert after["s|plant-01"]["state"] == "PENDING"
    assert after["release"].metadata["etag"] == before["release"].metadata["etag"]
    assert _entities(service, store, "siteindex", "plant-01") == {}


def test_a_retried_save_does_not_fail_on_evidence_already_stored(store: AzureTableStore) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01")])
    row = store.get_site_sync(release.release_id, "plant-01")
    moved = row.value.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0)
    evidence = make_evidence(moved, at=T0)
    assert store.append_evidence([evidence]) == 1
    store.save_site_sync(moved, etag=row.etag, evidence=[evidence, evidence])
    assert store.list_evidence(release.release_id) == [evidence]


def test_save_site_sync_of_a_missing_row_is_not_found(store: AzureTableStore) -> None:
    release = make_release()
    store.create_release(release)
    etag = store.get_release(release.release_id).etag  # a well-formed ETag of another entity
    with pytest.raises(NotFound):
        store.save_site_sync(make_row(release, "plant-01"), etag=etag)


# -- batches of rows -----------------------------------------------------------------------------


def test_add_250_rows_where_30_exist_creates_220_and_keeps_the_30(
    store: AzureTableStore, counter: RequestCounter
) -> None:
    release = make_release()
    store.create_release(release)
    sites = site_names(250)
    existing = sites[::8][:30]  # spread over all three chunks of 99
    assert store.add_site_syncs([make_row(release, s, state=SyncState.SKIPPED) for s in existing]) == 30
    etags = {v.value.site: v.etag for v in store.list_site_syncs(release.release_id)}

    counter.reset()
    assert store.add_site_syncs([make_row(release, s) for s in sites]) == 220

    # Per chunk: a failed transaction, one query for the existing keys, a transaction of the rest
    # (the site ledger is the release summary's to seed, off the fan-out's path).
    batches = [url for method, url in counter.requests if method == "POST"]
    assert len(batches) == 6
    listed = store.list_site_syncs(release.release_id)
    assert [v.value.site for v in listed] == sites
    for versioned in listed:
        if versioned.value.site in etags:
            assert versioned.value.state is SyncState.SKIPPED
            assert versioned.etag == etags[versioned.value.site]
        else:
            assert versioned.value.state is SyncState.PENDING


def test_concurrent_fan_outs_of_the_same_rows_create_each_row_once(store: AzureTableStore) -> None:
    release = make_release()
    store.create_release(release)
    rows = [make_row(release, s) for s in site_names(250)]
    created: list[int] = []
    errors: list[BaseException] = []

    def fan_out() -> None:
        try:
            created.append(store.add_site_syncs(rows))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=fan_out) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(created) == 250
    assert len(store.list_site_syncs(release.release_id)) == 250


def test_list_site_syncs_follows_continuations_past_1000_rows(store: AzureTableStore, counter: RequestCounter) -> None:
    release = make_release()
    store.create_release(release)
    sites = site_names(1_234)
    assert store.add_site_syncs([make_row(release, s) for s in sites]) == 1_234

    counter.reset()
    listed = store.list_site_syncs(release.release_id)
    assert [v.value.site for v in listed] == sites
    # The service caps a response at 1,000 entities: 1,234 rows take two responses, both followed.
    assert len([url for method, url in counter.requests if method == "GET"]) == 2


def test_a_release_version_is_one_short_read_whatever_the_rows(
    store: AzureTableStore, service: TableServiceClient, counter: RequestCounter
) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, s) for s in site_names(1_234)])

    counter.reset()
    version = store.release_version(release.release_id)
    # Header and version entity, not a key per row (1,235 keys would take two responses).
    assert len(counter.requests) == 1
    table = service.get_table_client(store.table_names["releases"])
    token = table.get_entity(release.release_id, "release|version")["token"]
    assert version.endswith(f"|{token}")


def test_a_release_written_before_the_version_entity_is_versioned_by_its_rows_until_its_next_write(
    store: AzureTableStore, service: TableServiceClient
) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01"), make_row(release, "plant-02")])
    table = service.get_table_client(store.table_names["releases"])
    table.delete_entity(release.release_id, "release|version")  # as a release stored by an earlier acrsync

    legacy = store.release_version(release.release_id)
    assert store.release_version(release.release_id) == legacy
    row = store.get_site_sync(release.release_id, "plant-01")
    store.save_site_sync(row.value.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0), etag=row.etag)
    assert store.release_version(release.release_id) != legacy
    assert table.get_entity(release.release_id, "release|version")["token"]


def test_concurrent_saves_of_different_rows_all_commit_and_each_moves_the_version(store: AzureTableStore) -> None:
    release = make_release()
    store.create_release(release)
    sites = site_names(8)
    store.add_site_syncs([make_row(release, s) for s in sites])
    before = store.release_version(release.release_id)
    errors: list[BaseException] = []
    start = threading.Barrier(len(sites))

    def check(site: str) -> None:
        try:
            row = store.get_site_sync(release.release_id, site)
            start.wait()
            store.save_site_sync(replace(row.value, checks=row.value.checks + 1), etag=row.etag)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(site,)) for site in sites]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The version entity is written unconditionally, so writers of other rows never conflict on it.
    assert errors == []
    assert all(row.value.checks == 1 for row in store.list_site_syncs(release.release_id))
    assert store.release_version(release.release_id) != before


def test_evidence_keys_sort_by_utc_time_whatever_the_offset(store: AzureTableStore) -> None:
    release = make_release()
    store.create_release(release)
    row = make_row(release, "plant-01")
    plus_two = timezone(timedelta(hours=2))
    # 09:30+02:00 is 07:30Z: earlier than 08:00Z although its local clock reads later.
    later = make_evidence(row, at=T0.replace(hour=8, minute=0), summary="later")
    earlier = make_evidence(row, at=T0.replace(hour=9, minute=30).replace(tzinfo=plus_two), summary="earlier")
    assert store.append_evidence([later, earlier]) == 2
    assert [e.summary for e in store.list_evidence(release.release_id, site="plant-01")] == ["earlier", "later"]


def test_too_much_evidence_for_one_transaction_is_refused_before_writing(store: AzureTableStore) -> None:
    release = make_release()
    store.create_release(release)
    store.add_site_syncs([make_row(release, "plant-01")])
    row = store.get_site_sync(release.release_id, "plant-01")
    evidence = [make_evidence(row.value, at=T0 + timedelta(seconds=i)) for i in range(100)]  # 101 operations
    with pytest.raises(InvalidInput, match="TOO_MUCH_EVIDENCE"):
        store.save_site_sync(row.value, etag=row.etag, evidence=evidence)
    assert store.get_site_sync(release.release_id, "plant-01").etag == row.etag


# -- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "it's a repo",
        "a b  c",  # single and double spaces: the SDK splits the filter template on spaces
        "x' or RowKey ne '",
        "@pk",
        "' or true or '",
    ],
)
def test_filter_values_with_quotes_and_spaces_match_exactly_and_never_inject(
    store: AzureTableStore, service: TableServiceClient, value: str
) -> None:
    normal = make_release()
    odd = make_release(pushed_at=T0 + timedelta(minutes=1))
    for release in (normal, odd):
        store.create_release(release)
        store.publish_release(release)
    # Domain validation keeps such values out of releases, so plant them in the index directly to
    # prove values round-trip through the parameterised filter.
    index = service.get_table_client(store.table_names["releaseindex"])
    rk = f"{inverted_time_key(odd.pushed_at)}|{odd.release_id}"
    index.update_entity({"PartitionKey": "all", "RowKey": rk, "repository": value, "digest": value + " x"})

    assert [r.release_id for r in store.list_releases(repository=value).items] == [odd.release_id]
    assert [r.release_id for r in store.list_releases(digest=value + " x").items] == [odd.release_id]
    assert store.list_releases(repository=value, digest=value).items == []
    assert [r.release_id for r in store.list_releases(repository=normal.repository).items] == [normal.release_id]


def test_site_and_release_keys_with_odd_characters_are_point_reads_not_errors(store: AzureTableStore) -> None:
    for key in ["a'b", "x/y", "#?%", "a b", "' or '1' eq '1"]:
        with pytest.raises(NotFound):
            store.get_release(key)
        with pytest.raises(NotFound):
            store.get_site_sync(key, key)
        with pytest.raises(NotFound):
            store.get_site(key)


def test_release_listing_pages_are_not_thrown_off_by_a_tag_filter(store: AzureTableStore) -> None:
    releases = [
        make_release(tags=frozenset({"stable"} if i % 10 == 0 else {f"1.{i}.0"}), pushed_at=T0 + timedelta(minutes=i))
        for i in range(40)
    ]
    for release in releases:
        store.create_release(release)
        store.publish_release(release)
    seen: list[str] = []
    token: str | None = None
    while True:
        page = store.list_releases(tag="stable", page_size=1, continuation=token)
        seen.extend(r.release_id for r in page.items)
        token = page.continuation
        if token is None:
            break
    assert seen == [releases[i].release_id for i in (30, 20, 10, 0)]


def test_listed_releases_carry_the_current_header(store: AzureTableStore) -> None:
    release = make_release()
    created = store.create_release(release)
    store.publish_release(release)
    counted = replace(release, counts={SyncState.VERIFIED: 3})
    store.replace_release(counted, etag=created.etag)
    assert store.list_releases().items == [counted]
    assert store.is_release_published(release.release_id)


# -- error translation ---------------------------------------------------------------------------


def test_a_closed_port_is_store_unavailable_and_names_no_secret() -> None:
    store = AzureTableStore.from_connection_string(connection_string_for(free_port()), retry_total=0)
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.get_release("0" * 32)
        assert isinstance(info.value.__cause__, ServiceRequestError)
        assert "AccountKey" not in str(info.value) and "Eby8" not in str(info.value)
        with pytest.raises(StoreUnavailable):
            store.list_site_syncs("0" * 32)  # lazily paged queries are translated too
    finally:
        store.close()


def test_azurite_stopping_mid_test_is_store_unavailable(tmp_path: Path) -> None:
    handle = start_azurite(tmp_path)
    store = AzureTableStore.from_connection_string(handle.connection_string, table_prefix="gone", retry_total=0)
    try:
        store.ensure_tables()
        release = make_release()
        created = store.create_release(release)
        handle.stop()
        with pytest.raises(StoreUnavailable):
            store.get_release(release.release_id)
        with pytest.raises(StoreUnavailable):
            store.replace_release(release, etag=created.etag)
        with pytest.raises(StoreUnavailable):
            store.add_site_syncs([make_row(release, "plant-01")])
    finally:
        store.close()
        handle.stop()


def test_a_missing_table_is_rejected_not_reported_as_a_missing_entity(server: AzuriteHandle) -> None:
    store = AzureTableStore.from_connection_string(
        server.connection_string, table_prefix="never" + secrets.token_hex(3)
    )
    try:
        with pytest.raises(StoreRejected, match="table does not exist"):
            store.get_release("0" * 32)
    finally:
        store.close()


def _http_error(status: int, code: str = "") -> HttpResponseError:
    exc = HttpResponseError(message="AccountKey=secret leaked into an SDK message")
    exc.status_code = status
    exc.error_code = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (408, "OperationTimedOut", StoreUnavailable),
        (429, "", StoreUnavailable),
        (500, "InternalError", StoreUnavailable),
        (503, "ServerBusy", StoreUnavailable),
        (400, "InvalidInput", StoreRejected),
        (403, "AuthorizationFailure", StoreRejected),
        (409, "TableBeingDeleted", StoreRejected),
        (409, "EntityAlreadyExists", AlreadyExists),
        (412, "UpdateConditionNotSatisfied", ConcurrencyConflict),
        (404, "ResourceNotFound", NotFound),
        (413, "RequestBodyTooLarge", EntityTooLarge),
    ],
)
def test_http_statuses_translate_at_one_point(status: int, code: str, expected: type[Exception]) -> None:
    raw = _http_error(status, code)
    with pytest.raises(expected) as info, azure_tables._translated("probe operation"):
        raise raw
    assert info.value.__cause__ is raw
    assert "probe operation" in str(info.value) and "secret" not in str(info.value)
