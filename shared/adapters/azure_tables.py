"""The :class:`~shared.ports.StateStore` on Azure Table Storage (``azure-data-tables``).

Layout (``{prefix}`` lets tests and environments share an account):

``{prefix}sites``
    PartitionKey ``"site"``, RowKey = site name; ``doc``.
``{prefix}releases``
    PartitionKey = release id. Everything about one release shares that partition, so "all sites
    of one release" is one partition read and :meth:`AzureTableStore.save_site_sync` is one entity
    group transaction:

    - RowKey ``"release"``: the header (``doc``, ``repository``, ``digest``);
    - RowKey ``"release|version"``: ``token``, a random value every transaction that writes rows
      replaces, so the release's version (header ETag and token) is one two-entity range read;
    - RowKey ``"s|<site>"``: one site-sync row (``doc``, ``site``, ``state``, and ``due_at`` when the
      row is due at some time: the sweeper's index, a fixed-width UTC time compared in the service);
    - RowKey ``"e|<site>|<observed_at, UTC, fixed width>|<evidence_id>"``: evidence (``doc``, ``site``).
``{prefix}releaseindex``
    PartitionKey ``"all"``, RowKey = ``inverted_time_key(pushed_at) + "|" + release_id`` so a
    partition scan is newest-push first; ``release_id``, ``repository``, ``digest``, ``tags`` (JSON
    list) to filter on. Written only by :meth:`AzureTableStore.publish_release`, so a row here is
    the fan-out-complete marker. The release document itself is not copied: the header changes with
    every counted save, so listings read the headers (parallel point reads) to return current counts.
``{prefix}siteledger``
    PartitionKey = the push day (UTC, ``YYYY-MM-DD``), RowKey = site; ``site``, ``figures`` and
    ``entries`` (JSON, :mod:`shared.domain.ledger`), written right after a save that changed the
    row's entry (and by ``seed_ledger`` for the rows a fan-out created), conditional on the ETag
    read. A report reads ``figures`` of one partition per day of its period. ``entries`` holds one
    item per release pushed that day (about
    70 bytes each): a site that receives more than about 400 releases pushed on one day loses the
    report's figures of the others (logged).
``{prefix}siteindex``
    PartitionKey = site, RowKey = ``inverted_time_key(row.pushed_at) + "|" + release_id``; ``doc`` =
    the row as last saved. Rows enter it when :meth:`AzureTableStore.save_site_sync` has committed.

Every document goes through :mod:`shared.adapters.codec`; every key part that could hold a
character Table keys forbid goes through ``encode_key``. Filters are fixed templates whose values
are always passed as ``parameters`` with one space around each ``@name`` (the SDK substitutes only
whole space-delimited tokens), so no caller text ever becomes OData syntax.

SDK exceptions are translated in exactly one place, :func:`_translated`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import (
    RequestTooLargeError,
    TableClient,
    TableEntity,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from shared.adapters.codec import (
    continuation_after,
    dump_annotations,
    dump_document,
    encode_continuation,
    encode_key,
    evidence_from_doc,
    evidence_to_doc,
    inverted_time_key,
    load_document,
    release_from_doc,
    release_to_doc,
    site_from_doc,
    site_sync_from_doc,
    site_sync_to_doc,
    site_to_doc,
)
from shared.domain.ledger import (
    LedgerDay,
    LedgerEntry,
    ledger_change,
    ledger_day,
    ledger_days,
    ledger_doc,
    ledger_from_doc,
    starts_mid_day,
)
from shared.domain.model import Evidence, Page, Release, Site, SiteSync, Versioned
from shared.domain.workloads import SiteRuntime, runtime_from_doc, runtime_to_doc
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
from shared.ports import ROWS_PER_TRANSACTION, BatchSaved, RowWrite, SavedSiteSync, batch_release

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

T = TypeVar("T")

# One transaction operation: (verb, entity, keyword arguments for that verb).
_Op = tuple[str, Mapping[str, Any], Mapping[str, Any]]

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_SITES, _RELEASES, _RELEASE_INDEX, _SITE_INDEX = "sites", "releases", "releaseindex", "siteindex"
_LEDGER = "siteledger"

SITE_PK = "site"
# What runs at each site: one entity per site beside the sites, in a partition of its own.
RUNTIME_PK = "runtime"
INDEX_PK = "all"
HEADER_RK = "release"
# The release's version: rewritten with a fresh token in the transaction of every row write, so a
# revalidation reads two entities, not a key per row. Its key sorts right after the header's and
# before every row's, so header and version are one short range of the partition.
VERSION_RK = "release|version"
VERSION_PROPERTY = "token"
ANNOTATIONS_PROPERTY = "annotations"  # the release's annotations, beside its header document
ROW_PREFIX = "s|"
EVIDENCE_PREFIX = "e|"
# '}' is the character after '|', so [p + "|", p + "}") is exactly the keys starting with p + "|".
_AFTER_BAR = "}"

# Entity group transactions take at most 100 operations (all in one partition).
MAX_BATCH = 100
# The service returns at most 1,000 entities per response; the pager follows continuations.
MAX_RESULTS_PER_PAGE = 1000
# How often add_site_syncs / append_evidence re-read and resubmit a chunk that raced with another
# writer creating some of the same entities; each round strictly shrinks the chunk unless rows
# are being created and deleted concurrently, which nothing does.
MAX_CREATE_ROUNDS = 5
# Listing pages read release headers by point reads; a few in parallel keep a 50-item page fast.
_HEADER_READERS = 8

_RETRYABLE_STATUS = {408, 429}
_EXISTS_CODES = {"EntityAlreadyExists", "ResourceAlreadyExists", "TableAlreadyExists"}


# -- error translation (the one place SDK exceptions are caught) -------------------------------


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _from_status(operation: str, exc: HttpResponseError) -> Exception:
    status = exc.status_code
    code = _error_code(exc)
    # Never echo the SDK message: it can carry request URLs; the operation, status and code suffice.
    message = f"{operation} failed (HTTP {status}{', ' + code if code else ''})"
    error: Exception
    if status == 412 or code in {"UpdateConditionNotSatisfied", "ConditionNotMet"}:
        error = ConcurrencyConflict(message)
    elif status == 409 and code in _EXISTS_CODES:
        error = AlreadyExists(message)
    elif status == 404 and code == "TableNotFound":
        # A missing table is a deployment problem, not a missing entity; NotFound would hide it.
        error = StoreRejected(f"{message}: the table does not exist (deploy it, or call ensure_tables locally)")
    elif status == 404:
        error = NotFound(message)
    elif status == 413:
        error = EntityTooLarge(f"{message}: the request exceeds the Table Storage size limit")
    elif status is None or status in _RETRYABLE_STATUS or status >= 500:
        error = StoreUnavailable(message)
    else:
        error = StoreRejected(message)
    return error


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn every SDK exception raised inside into the acrsync tree, chained with ``from``."""
    try:
        yield
    except RequestTooLargeError as exc:  # a TableTransactionError subclass: test it first
        raise EntityTooLarge(f"{operation} failed: the request exceeds the Table Storage size limit") from exc
    except ResourceModifiedError as exc:
        raise ConcurrencyConflict(f"{operation} failed: the entity changed since it was read") from exc
    except ResourceExistsError as exc:
        raise AlreadyExists(f"{operation} failed: the entity already exists") from exc
    except ResourceNotFoundError as exc:
        raise _from_status(operation, exc) from exc
    except TableTransactionError as exc:
        # Classified by the failing operation's status: 412 (a stale ETag) is a ConcurrencyConflict,
        # 409 EntityAlreadyExists an AlreadyExists, 404 a NotFound; nothing of the batch was written.
        raise _from_status(operation, exc) from exc
    except HttpResponseError as exc:
        raise _from_status(operation, exc) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StoreUnavailable(f"{operation} failed: Table Storage could not be reached") from exc
    except AzureError as exc:  # anything else from the pipeline (decode errors, incomplete reads)
        raise StoreUnavailable(f"{operation} failed: {type(exc).__name__}") from exc


# -- keys and entities --------------------------------------------------------------------------


def _pk(release_id: str) -> str:
    return encode_key(release_id)


def _time_key(at: datetime) -> str:
    """Fixed-width UTC time so keys sort chronologically whatever offset the value carried."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row_rk(site: str) -> str:
    return ROW_PREFIX + encode_key(site)


def _evidence_site_prefix(site: str) -> str:
    return f"{EVIDENCE_PREFIX}{encode_key(site)}|"


def _evidence_rk(ev: Evidence) -> str:
    return f"{_evidence_site_prefix(ev.site)}{_time_key(ev.observed_at)}|{ev.evidence_id}"


def _index_rk(pushed_at: datetime, release_id: str) -> str:
    return f"{inverted_time_key(pushed_at)}|{encode_key(release_id)}"


def _version_op(pk: str) -> _Op:
    # Unconditional: concurrent writers of different rows never conflict on it; whichever commits
    # last leaves a token no reader has seen.
    entity = {"PartitionKey": pk, "RowKey": VERSION_RK, VERSION_PROPERTY: secrets.token_hex(16)}
    return ("upsert", entity, {"mode": UpdateMode.REPLACE})


def _header_entity(release: Release) -> dict[str, Any]:
    entity = {
        "PartitionKey": _pk(release.release_id),
        "RowKey": HEADER_RK,
        "doc": dump_document(release_to_doc(release), what=f"release {release.release_id}"),
        "repository": release.repository,
        "digest": release.digest,
    }
    annotations = dump_annotations(release)
    if annotations is not None:
        entity[ANNOTATIONS_PROPERTY] = annotations
    return entity


def _release_of(entity: Mapping[str, Any]) -> Release:
    doc = _doc(entity)
    if entity.get(ANNOTATIONS_PROPERTY):
        doc["annotations"] = load_document(entity[ANNOTATIONS_PROPERTY])
    return release_from_doc(doc)


def _row_entity(row: SiteSync) -> dict[str, Any]:
    entity = {
        "PartitionKey": _pk(row.release_id),
        "RowKey": _row_rk(row.site),
        "doc": dump_document(site_sync_to_doc(row), what=f"site-sync row {row.release_id}/{row.site}"),
        "site": row.site,
        "state": row.state.value,
    }
    due = row.due_at
    if due is not None:
        entity["due_at"] = _time_key(due)  # the due index: absent when the row is never due
    return entity


def _evidence_entity(ev: Evidence) -> dict[str, Any]:
    return {
        "PartitionKey": _pk(ev.release_id),
        "RowKey": _evidence_rk(ev),
        "doc": dump_document(evidence_to_doc(ev), what=f"evidence {ev.evidence_id}"),
        "site": ev.site,
    }


def _ledger_entity(day: LedgerDay) -> dict[str, Any]:
    doc = ledger_doc(day)
    return {
        "PartitionKey": day.day,
        "RowKey": encode_key(day.site),
        "site": day.site,
        "figures": json.dumps(doc["figures"], separators=(",", ":")),
        "entries": json.dumps(doc["entries"], separators=(",", ":")),
    }


def _ledger_of(day: str, entity: Mapping[str, Any], *, with_entries: bool) -> LedgerDay:
    doc = {"figures": json.loads(entity.get("figures") or "{}")}
    if with_entries:
        doc["entries"] = json.loads(entity.get("entries") or "{}")
    return ledger_from_doc(day, str(entity["site"]), doc, with_entries=with_entries)


def _site_index_entity(row: SiteSync) -> dict[str, Any]:
    return {
        "PartitionKey": encode_key(row.site),
        "RowKey": _index_rk(row.pushed_at, row.release_id),
        "doc": dump_document(site_sync_to_doc(row), what=f"site-sync row {row.release_id}/{row.site}"),
        "release_id": row.release_id,
    }


def _doc(entity: Mapping[str, Any]) -> dict[str, Any]:
    return load_document(entity["doc"])


def _etag(entity: TableEntity) -> str:
    return str(entity.metadata["etag"])


def _new_etag(metadata: Mapping[str, Any], operation: str) -> str:
    etag = metadata.get("etag")
    if not etag:
        raise StoreUnavailable(f"{operation}: the service returned no ETag")
    return str(etag)


def _conditional(etag: str) -> dict[str, Any]:
    if not etag:
        raise InvalidInput("MISSING_ETAG", "a conditional write needs the ETag read with the entity")
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _group_by_partition(entities: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Entities per PartitionKey, one per RowKey (the first wins: a transaction takes each key once)."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for entity in entities:
        groups.setdefault(entity["PartitionKey"], {}).setdefault(entity["RowKey"], entity)
    return groups


def _check_page_size(page_size: int) -> None:
    if not isinstance(page_size, int) or page_size < 1:
        raise InvalidInput("INVALID_PAGE_SIZE", "page_size must be a positive integer")


class AzureTableStore:
    """Sites, releases, site-sync rows and evidence in four Table Storage tables (see the module doc)."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential,
        *,
        table_prefix: str = "acrsync",
        **client_kwargs: Any,
    ) -> None:
        """Connect with Microsoft Entra ID (managed identity in Azure).

        ``client_kwargs`` go to ``TableServiceClient`` (e.g. ``retry_total``, ``connection_timeout``).
        """
        _table_names(table_prefix)
        try:
            service = TableServiceClient(endpoint=endpoint, credential=credential, **client_kwargs)
        except ValueError as exc:
            raise ConfigurationError("the Table Storage endpoint is not a valid account URL") from exc
        self._setup(service, table_prefix)

    @classmethod
    def from_connection_string(
        cls, conn_str: str, *, table_prefix: str = "acrsync", **client_kwargs: Any
    ) -> AzureTableStore:
        """Connect with a connection string (Azurite, local development)."""
        _table_names(table_prefix)  # fail on a bad prefix before touching the connection string
        try:
            service = TableServiceClient.from_connection_string(conn_str, **client_kwargs)
        except ValueError as exc:
            # Name the setting, never its value (it holds the account key).
            raise ConfigurationError("the Table Storage connection string is malformed") from exc
        store = cls.__new__(cls)
        store._setup(service, table_prefix)
        return store

    def _setup(self, service: TableServiceClient, table_prefix: str) -> None:
        self._names = _table_names(table_prefix)
        self._service = service
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        self._readers: ThreadPoolExecutor | None = None

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def table_names(self) -> dict[str, str]:
        """Logical name (``sites``, ``releases``, ``releaseindex``, ``siteindex``, ``siteledger``) → table name."""
        return dict(self._names)

    def _table(self, logical: str) -> TableClient:
        with self._lock:
            client = self._clients.get(logical)
            if client is None:
                # Clients from the service client share its pipeline and connection pool.
                client = self._service.get_table_client(self._names[logical])
                self._clients[logical] = client
            return client

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._readers is None:
                self._readers = ThreadPoolExecutor(max_workers=_HEADER_READERS, thread_name_prefix="acrsync-tables")
            return self._readers

    def _query(
        self,
        logical: str,
        operation: str,
        query_filter: str,
        parameters: dict[str, Any],
        *,
        select: list[str] | None = None,
        per_page: int = MAX_RESULTS_PER_PAGE,
    ) -> Iterator[TableEntity]:
        """Entities matching a fixed filter template; follows service continuations lazily."""
        pages = self._table(logical).query_entities(
            query_filter, parameters=parameters, select=select, results_per_page=min(per_page, MAX_RESULTS_PER_PAGE)
        )
        # The pager does I/O while iterating, so the translation must cover the iteration.
        with _translated(operation):
            yield from pages

    def ensure_tables(self) -> None:
        """Create the tables when absent (local, dev and tests; in Azure, Bicep creates them)."""
        for name in self._names.values():
            with _translated(f"create table {name}"):
                self._service.create_table_if_not_exists(name)

    def close(self) -> None:
        with self._lock:
            readers, self._readers = self._readers, None
            self._clients.clear()
        if readers is not None:
            readers.shutdown(wait=True)
        self._service.close()

    # -- sites ----------------------------------------------------------------------------------

    def upsert_sites(self, sites: Sequence[Site]) -> None:
        latest = {site.name: site for site in sites}  # the last of duplicate names wins, as in a loop
        entities = [
            {
                "PartitionKey": SITE_PK,
                "RowKey": encode_key(site.name),
                "doc": dump_document(site_to_doc(site), what=f"site {site.name}"),
            }
            for site in latest.values()
        ]
        table = self._table(_SITES)
        for chunk in _chunks(entities, MAX_BATCH):
            ops: list[_Op] = [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in chunk]
            with _translated("upsert sites"):
                table.submit_transaction(ops)

    def get_site(self, name: str) -> Site:
        with _translated(f"get site {name}"):
            entity = self._table(_SITES).get_entity(SITE_PK, encode_key(name))
        return site_from_doc(_doc(entity))

    def list_sites(self) -> list[Site]:
        entities = self._query(_SITES, "list sites", "PartitionKey eq @pk", {"pk": SITE_PK})
        return sorted((site_from_doc(_doc(e)) for e in entities), key=lambda site: site.name)

    def delete_site(self, name: str) -> None:
        # delete_entity already treats 404 as success; NotFound is caught for the table-less case too.
        try:
            with _translated(f"delete site {name}"):
                self._table(_SITES).delete_entity(SITE_PK, encode_key(name))
        except NotFound:
            pass

    # -- what runs at each site ----------------------------------------------------------------

    def get_site_runtime(self, site: str) -> Versioned[SiteRuntime]:
        with _translated(f"get runtime of site {site}"):
            entity = self._table(_SITES).get_entity(RUNTIME_PK, encode_key(site))
        return Versioned(runtime_from_doc(_doc(entity)), _etag(entity))

    def list_site_runtimes(self) -> list[SiteRuntime]:
        entities = self._query(_SITES, "list site runtimes", "PartitionKey eq @pk", {"pk": RUNTIME_PK})
        return sorted((runtime_from_doc(_doc(e)) for e in entities), key=lambda runtime: runtime.site)

    def save_site_runtime(self, runtime: SiteRuntime, *, etag: str | None) -> str:
        entity = {
            "PartitionKey": RUNTIME_PK,
            "RowKey": encode_key(runtime.site),
            "doc": dump_document(runtime_to_doc(runtime), what=f"runtime of site {runtime.site}"),
        }
        operation = f"save runtime of site {runtime.site}"
        table = self._table(_SITES)
        try:
            with _translated(operation):
                if etag is None:
                    metadata = table.create_entity(entity)
                else:
                    metadata = table.update_entity(entity, **_conditional(etag))
        except (AlreadyExists, NotFound) as exc:
            raise ConcurrencyConflict(f"the runtime of site {runtime.site} changed since it was read") from exc
        return _new_etag(metadata, operation)

    # -- releases -------------------------------------------------------------------------------

    def create_release(self, release: Release) -> Versioned[Release]:
        entity = _header_entity(release)
        operation = f"create release {release.release_id}"
        with _translated(operation):
            metadata = self._table(_RELEASES).create_entity(entity)
        return Versioned(release, _new_etag(metadata, operation))

    def get_release(self, release_id: str) -> Versioned[Release]:
        with _translated(f"get release {release_id}"):
            entity = self._table(_RELEASES).get_entity(_pk(release_id), HEADER_RK)
        return Versioned(_release_of(entity), _etag(entity))

    def replace_release(self, release: Release, *, etag: str) -> Versioned[Release]:
        entity = _header_entity(release)
        options = _conditional(etag)
        operation = f"replace release {release.release_id}"
        with _translated(operation):
            metadata = self._table(_RELEASES).update_entity(entity, **options)
        return Versioned(release, _new_etag(metadata, operation))

    def publish_release(self, release: Release) -> None:
        # One upsert and nothing else: the header is not touched, so publishing never invalidates
        # an ETag a worker holds. is_release_published pays for that with one extra point read.
        entity = {
            "PartitionKey": INDEX_PK,
            "RowKey": _index_rk(release.pushed_at, release.release_id),
            "release_id": release.release_id,
            "repository": release.repository,
            "digest": release.digest,
            "tags": json.dumps(sorted(release.tags), separators=(",", ":")),
        }
        with _translated(f"publish release {release.release_id}"):
            self._table(_RELEASE_INDEX).upsert_entity(entity, mode=UpdateMode.REPLACE)

    def is_release_published(self, release_id: str) -> bool:
        try:
            header = self.get_release(release_id)
        except NotFound:
            return False
        try:
            with _translated(f"check release {release_id} is published"):
                self._table(_RELEASE_INDEX).get_entity(
                    INDEX_PK, _index_rk(header.value.pushed_at, release_id), select=["RowKey"]
                )
        except NotFound:
            return False
        return True

    def list_releases(
        self,
        *,
        repository: str | None = None,
        tag: str | None = None,
        digest: str | None = None,
        page_size: int = 50,
        continuation: str | None = None,
    ) -> Page[Release]:
        _check_page_size(page_size)
        after = continuation_after(continuation, filters={"repository": repository, "tag": tag, "digest": digest})
        # Fixed clauses only; every value travels as a parameter.
        clauses, parameters = ["PartitionKey eq @pk"], {"pk": INDEX_PK}
        if repository is not None:
            clauses.append("repository eq @repository")
            parameters["repository"] = repository
        if digest is not None:
            clauses.append("digest eq @digest")
            parameters["digest"] = digest
        if after is not None:
            clauses.append("RowKey gt @after")
            parameters["after"] = after
        entities = self._query(
            _RELEASE_INDEX,
            "list releases",
            " and ".join(clauses),
            parameters,
            select=["RowKey", "release_id", "tags"],
            # Tags are filtered here, so with a tag filter read full responses rather than many small ones.
            per_page=MAX_RESULTS_PER_PAGE if tag is not None else page_size + 1,
        )
        # One look-ahead match tells whether another page exists, so the last page has no token.
        matches: list[TableEntity] = []
        for entity in entities:
            if tag is not None and tag not in json.loads(entity.get("tags") or "[]"):
                continue
            matches.append(entity)
            if len(matches) > page_size:
                break
        page = matches[:page_size]
        releases = self._read_headers([str(e["release_id"]) for e in page])
        token = None
        if len(matches) > page_size:
            token = encode_continuation(
                {"after": page[-1]["RowKey"]}, filters={"repository": repository, "tag": tag, "digest": digest}
            )
        return Page(releases, token)

    def _read_headers(self, release_ids: list[str]) -> list[Release]:
        """Current headers of listed releases, in the given order (index rows without one are skipped)."""

        def read(release_id: str) -> Release | None:
            try:
                return self.get_release(release_id).value
            except NotFound:
                log.warning("release %s is in the release index but has no header", release_id)
                return None

        if len(release_ids) <= 1:
            found = [read(release_id) for release_id in release_ids]
        else:
            found = list(self._executor().map(read, release_ids))
        return [release for release in found if release is not None]

    # -- site-sync rows -------------------------------------------------------------------------

    def add_site_syncs(self, rows: Sequence[SiteSync]) -> int:
        created = 0
        for pk, entities in _group_by_partition(_row_entity(row) for row in rows).items():
            for chunk in _chunks(list(entities.values()), ROWS_PER_TRANSACTION):
                operation = f"add site syncs to release {pk}"
                created += len(self._create_missing(_RELEASES, pk, chunk, operation, moves_version=True))
        return created

    def seed_ledger(self, rows: Sequence[SiteSync]) -> None:
        # A release's rows share one push day: one range read and one transaction per 100 rows.
        entries = [entry for row in rows if (entry := ledger_change(row, None)) is not None]
        self._record_ledger(entries, only_if_absent=True)

    def _create_missing(
        self, logical: str, pk: str, chunk: Sequence[dict[str, Any]], operation: str, *, moves_version: bool = False
    ) -> list[dict[str, Any]]:
        """Create the entities of one partition chunk that do not exist yet, atomically; the new ones.

        The optimistic path (nothing exists, the fan-out case) costs one transaction. When some
        exist, the transaction wrote nothing; one range query finds the existing keys and only the
        missing ones are resubmitted.
        """
        pending = list(chunk)
        table = self._table(logical)
        for _ in range(MAX_CREATE_ROUNDS):
            if not pending:
                return []
            ops: list[_Op] = [("create", entity, {}) for entity in pending]
            if moves_version:
                ops.append(_version_op(pk))
            try:
                with _translated(operation):
                    table.submit_transaction(ops)
                return pending
            except AlreadyExists:
                existing = self._existing_row_keys(logical, pk, [e["RowKey"] for e in pending], operation)
                pending = [e for e in pending if e["RowKey"] not in existing]
                log.debug("%s: %s of the chunk already exist, creating the rest", operation, len(existing))
        raise ConcurrencyConflict(f"{operation}: other writers kept creating the same entities")

    def _existing_row_keys(self, logical: str, pk: str, row_keys: list[str], operation: str) -> set[str]:
        wanted = set(row_keys)
        entities = self._query(
            logical,
            operation,
            "PartitionKey eq @pk and RowKey ge @low and RowKey le @high",
            {"pk": pk, "low": min(row_keys), "high": max(row_keys)},
            select=["RowKey"],
        )
        return {str(e["RowKey"]) for e in entities if e["RowKey"] in wanted}

    def get_site_sync(self, release_id: str, site: str) -> Versioned[SiteSync]:
        with _translated(f"get site sync {release_id}/{site}"):
            entity = self._table(_RELEASES).get_entity(_pk(release_id), _row_rk(site))
        return Versioned(site_sync_from_doc(_doc(entity)), _etag(entity))

    def list_site_syncs(self, release_id: str) -> list[Versioned[SiteSync]]:
        # One partition, any size: the pager follows the 1,000-entity continuations.
        entities = self._query(
            _RELEASES,
            f"list site syncs of release {release_id}",
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": _pk(release_id), "low": ROW_PREFIX, "high": ROW_PREFIX[:-1] + _AFTER_BAR},
            select=["doc"],  # the document is the row; the other columns would only cost decoding (ETag still comes)
        )
        rows = [Versioned(site_sync_from_doc(_doc(e)), _etag(e)) for e in entities]
        return sorted(rows, key=lambda versioned: versioned.value.site)

    def release_version(self, release_id: str) -> str:
        pk = _pk(release_id)
        operation = f"read the version of release {release_id}"
        found = {
            str(entity["RowKey"]): entity
            for entity in self._query(
                _RELEASES,
                operation,
                "PartitionKey eq @pk and RowKey ge @header and RowKey le @version",
                {"pk": pk, "header": HEADER_RK, "version": VERSION_RK},
                select=["RowKey", VERSION_PROPERTY],
            )
        }
        if HEADER_RK not in found:
            raise NotFound(f"release {release_id} does not exist")
        if VERSION_RK in found:
            return f"{_etag(found[HEADER_RK])}|{found[VERSION_RK][VERSION_PROPERTY]}"
        return self._release_version_from_rows(release_id)

    def _release_version_from_rows(self, release_id: str) -> str:
        # A release whose rows were written before the version entity existed: the header and the
        # rows by key only (each entity's ETag comes with it, no document crosses). Its next row
        # write creates the version entity, and from then on the two-entity read above answers.
        # (Parameters are substituted per space-separated word, hence the spaced parentheses.)
        entities = self._query(
            _RELEASES,
            f"read versions of release {release_id}",
            "PartitionKey eq @pk and ( RowKey eq @header or ( RowKey ge @low and RowKey lt @high ) )",
            {"pk": _pk(release_id), "header": HEADER_RK, "low": ROW_PREFIX, "high": ROW_PREFIX[:-1] + _AFTER_BAR},
            select=["RowKey"],
        )
        digest = hashlib.sha256()
        header = None
        for entity in entities:
            if entity["RowKey"] == HEADER_RK:
                header = _etag(entity)
            else:
                digest.update(f"{entity['RowKey']}={_etag(entity)};".encode())
        if header is None:
            raise NotFound(f"release {release_id} does not exist")
        return f"{header}|{digest.hexdigest()[:32]}"

    def list_due_site_syncs(self, release_id: str, *, due_by: datetime) -> list[Versioned[SiteSync]]:
        # The filter on due_at runs in the service: only due rows cross the wire. A row without the
        # property (never due) does not match a comparison.
        entities = self._query(
            _RELEASES,
            f"list due site syncs of release {release_id}",
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high and due_at le @due",
            {"pk": _pk(release_id), "low": ROW_PREFIX, "high": ROW_PREFIX[:-1] + _AFTER_BAR, "due": _time_key(due_by)},
            select=["doc"],
        )
        rows = [Versioned(site_sync_from_doc(_doc(e)), _etag(e)) for e in entities]
        return sorted(rows, key=lambda versioned: versioned.value.site)

    def save_site_sync(
        self,
        row: SiteSync,
        *,
        etag: str,
        evidence: Sequence[Evidence] = (),
        release: Versioned[Release] | None = None,
        previous: SiteSync | None = None,
    ) -> SavedSiteSync:
        ops: list[_Op] = [("update", _row_entity(row), _conditional(etag))]
        if release is not None:
            if release.value.release_id != row.release_id:
                raise InvalidInput("CROSS_RELEASE_WRITE", "the release header and the row belong to different releases")
            ops.append(("update", _header_entity(release.value), _conditional(release.etag)))
        if any(ev.release_id != row.release_id for ev in evidence):
            raise InvalidInput("CROSS_RELEASE_WRITE", "evidence saved with a row must belong to the row's release")
        # Upsert, not create: a retried save must not fail on evidence the first attempt stored, and
        # evidence ids are deterministic, so the record written is the one already there.
        unique = {entity["RowKey"]: entity for entity in map(_evidence_entity, evidence)}
        ops.extend(("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in unique.values())
        ops.append(_version_op(_pk(row.release_id)))
        if len(ops) > MAX_BATCH:
            raise InvalidInput(
                "TOO_MUCH_EVIDENCE", f"one save takes at most {MAX_BATCH - 3} evidence records, got {len(unique)}"
            )
        operation = f"save site sync {row.release_id}/{row.site}"
        with _translated(operation):
            results = self._table(_RELEASES).submit_transaction(ops)
        saved = SavedSiteSync(
            row_etag=_new_etag(results[0], operation),
            release_etag=_new_etag(results[1], operation) if release is not None else None,
        )
        # The per-site index lives in another table, so it cannot join the transaction; it is written
        # right after and rewritten by every later save, so a lost write heals on the next check.
        with _translated(f"index site sync {row.release_id}/{row.site}"):
            self._table(_SITE_INDEX).upsert_entity(_site_index_entity(row), mode=UpdateMode.REPLACE)
        entry = ledger_change(row, previous)
        if entry is not None:
            self._record_ledger([entry])
        return saved

    def save_site_sync_batch(self, writes: Sequence[RowWrite]) -> BatchSaved:
        batch_release(writes)
        saved: list[str] = []
        refused: list[str] = []
        entries: list[LedgerEntry] = []
        for chunk in _chunks(list(writes), ROWS_PER_TRANSACTION):
            sites = [write.row.site for write in chunk]
            ops: list[_Op] = [("update", _row_entity(w.row), _conditional(w.etag)) for w in chunk]
            ops.append(_version_op(_pk(chunk[0].row.release_id)))
            try:
                with _translated(f"save {len(chunk)} site syncs of release {chunk[0].row.release_id}"):
                    self._table(_RELEASES).submit_transaction(ops)
            except (ConcurrencyConflict, NotFound):
                refused.extend(sites)  # the transaction wrote nothing
                continue
            saved.extend(sites)
            entries.extend(entry for w in chunk if (entry := ledger_change(w.row, w.previous)) is not None)
        if entries:
            self._record_ledger(entries)
        return BatchSaved(tuple(saved), tuple(refused))

    def list_ledger(self, *, pushed_from: datetime, pushed_until: datetime) -> list[LedgerDay]:
        first = ledger_day(pushed_from)
        partial = starts_mid_day(pushed_from)

        def read(day: str) -> list[LedgerDay]:
            with_entries = partial and day == first
            columns = ["site", "figures", "entries"] if with_entries else ["site", "figures"]
            entities = self._query(
                _LEDGER, f"list the site ledger of {day}", "PartitionKey eq @pk", {"pk": day}, select=columns
            )
            return [_ledger_of(day, entity, with_entries=with_entries) for entity in entities]

        days = ledger_days(pushed_from, pushed_until)
        return [ledger for batch in self._executor().map(read, days) for ledger in batch]

    def _record_ledger(self, entries: Sequence[LedgerEntry], *, only_if_absent: bool = False) -> None:
        """Record entries in their sites' ledgers: per push day, chunks of up to 100 sites, each one
        range read and one transaction conditional on what was read (a chunk that lost a race is
        read again). The rows are saved already: a ledger that cannot take an entry (full, or its
        table missing) costs the report that figure, logged, and never fails the save."""
        by_day: dict[str, dict[str, LedgerEntry]] = {}
        for entry in entries:
            by_day.setdefault(ledger_day(entry.pushed_at), {})[entry.site] = entry
        chunks = [
            (day, {site: by_site[site] for site in chunk})
            for day, by_site in by_day.items()
            for chunk in _chunks(sorted(by_site), MAX_BATCH)
        ]

        def record(work: tuple[str, dict[str, LedgerEntry]]) -> None:
            day, chunk = work
            try:
                self._record_ledger_chunk(day, chunk, only_if_absent)
            except (StoreRejected, EntityTooLarge) as exc:
                log.warning("the site ledger of %s refused %s entries: %s", day, len(chunk), exc)

        # Chunks touch different entities: a seed of a whole release runs them side by side.
        if len(chunks) == 1:
            record(chunks[0])
        else:
            list(self._executor().map(record, chunks))

    def _record_ledger_chunk(self, day: str, entries: Mapping[str, LedgerEntry], only_if_absent: bool) -> None:
        if len(entries) == 1 and not only_if_absent:
            [entry] = entries.values()
            self._record_ledger_entry(day, entry)
            return
        table = self._table(_LEDGER)
        keys = {encode_key(site): site for site in entries}
        for _ in range(MAX_CREATE_ROUNDS):
            found = {
                str(entity["RowKey"]): entity
                for entity in self._query(
                    _LEDGER,
                    f"read the site ledger of {day}",
                    "PartitionKey eq @pk and RowKey ge @low and RowKey le @high",
                    {"pk": day, "low": min(keys), "high": max(keys)},
                )
                if entity["RowKey"] in keys
            }
            ops: list[_Op] = []
            for key, site in keys.items():
                existing = found.get(key)
                current = _ledger_of(day, existing, with_entries=True) if existing else LedgerDay(day, site)
                recorded = current.record(entries[site], only_if_absent=only_if_absent)
                if recorded is current:
                    continue
                entity = _ledger_entity(recorded)
                ops.append(("update", entity, _conditional(_etag(existing))) if existing else ("create", entity, {}))
            if not ops:
                return
            try:
                with _translated(f"record the site ledger of {day}"):
                    table.submit_transaction(ops)
                return
            except (ConcurrencyConflict, AlreadyExists):
                continue  # another save changed one of these ledgers: read them again
        raise ConcurrencyConflict(f"the site ledger of {day} kept changing")

    def _record_ledger_entry(self, day: str, entry: LedgerEntry) -> None:
        """One entry (a row's save): a point read and a write conditional on it, cheaper than a
        range read and a transaction."""
        table = self._table(_LEDGER)
        operation = f"record the site ledger of {entry.site} for {day}"
        for _ in range(MAX_CREATE_ROUNDS):
            try:
                with _translated(operation):
                    existing = table.get_entity(day, encode_key(entry.site))
            except NotFound:
                existing = None
            current = _ledger_of(day, existing, with_entries=True) if existing else LedgerDay(day, entry.site)
            entity = _ledger_entity(current.record(entry))
            try:
                with _translated(operation):
                    if existing is None:
                        table.create_entity(entity)
                    else:
                        table.update_entity(entity, **_conditional(_etag(existing)))
                return
            except (ConcurrencyConflict, AlreadyExists):
                continue  # another save of this site's ledger won: read it again
        raise ConcurrencyConflict(f"{operation}: it kept changing")

    def list_site_syncs_for_site(
        self, site: str, *, page_size: int = 100, continuation: str | None = None
    ) -> Page[SiteSync]:
        _check_page_size(page_size)
        after = continuation_after(continuation, filters={"site": site})
        clauses, parameters = ["PartitionKey eq @pk"], {"pk": encode_key(site)}
        if after is not None:
            clauses.append("RowKey gt @after")
            parameters["after"] = after
        entities = self._query(
            _SITE_INDEX, f"list site syncs of site {site}", " and ".join(clauses), parameters, per_page=page_size + 1
        )
        matches: list[TableEntity] = []
        for entity in entities:
            matches.append(entity)
            if len(matches) > page_size:
                break
        page = matches[:page_size]
        token = None
        if len(matches) > page_size:
            token = encode_continuation({"after": page[-1]["RowKey"]}, filters={"site": site})
        return Page([site_sync_from_doc(_doc(e)) for e in page], token)

    # -- evidence -------------------------------------------------------------------------------

    def append_evidence(self, evidence: Sequence[Evidence]) -> int:
        created = 0
        for pk, entities in _group_by_partition(_evidence_entity(ev) for ev in evidence).items():
            for chunk in _chunks(list(entities.values()), MAX_BATCH):
                created += len(self._create_missing(_RELEASES, pk, chunk, f"append evidence to release {pk}"))
        return created

    def list_evidence(self, release_id: str, *, site: str | None = None) -> list[Evidence]:
        low = EVIDENCE_PREFIX if site is None else _evidence_site_prefix(site)
        entities = self._query(
            _RELEASES,
            f"list evidence of release {release_id}",
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": _pk(release_id), "low": low, "high": low[:-1] + _AFTER_BAR},
        )
        # Keys order one site's evidence by time, but a release's evidence spans sites: sort on the
        # observation time, ties broken by evidence id (the order the SQLite adapter gives too).
        found = [evidence_from_doc(_doc(e)) for e in entities]
        return sorted(found, key=lambda ev: (ev.observed_at, ev.evidence_id))


def _table_names(prefix: str) -> dict[str, str]:
    names = {logical: f"{prefix}{logical}" for logical in (_SITES, _RELEASES, _RELEASE_INDEX, _SITE_INDEX, _LEDGER)}
    bad = [name for name in names.values() if not _TABLE_NAME.fullmatch(name)]
    if bad:
        raise ConfigurationError(
            f"table_prefix {prefix!r} gives invalid table names {bad}: letters and digits only, "
            "starting with a letter, at most 63 characters"
        )
    return names
