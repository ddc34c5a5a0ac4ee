"""The state store on one local SQLite file: the laptop, CI and single-node backend.

Layout mirrors the Table Storage adapter's contract: a release header, its per-site rows and its
evidence are keyed by ``release_id`` so one ``BEGIN IMMEDIATE`` transaction covers a row change,
its evidence and the header counters. Documents go through :mod:`shared.adapters.codec`, so both
backends hold the same JSON and refuse the same oversize entities.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from shared.adapters import codec
from shared.domain.ledger import (
    LedgerDay,
    LedgerEntry,
    ledger_change,
    ledger_day,
    ledger_doc,
    ledger_from_doc,
    starts_mid_day,
)
from shared.domain.model import Evidence, Page, Release, Site, SiteSync, Versioned
from shared.domain.workloads import SiteRuntime, runtime_from_doc, runtime_to_doc
from shared.errors import (
    AcrSyncError,
    AlreadyExists,
    ConcurrencyConflict,
    ConfigurationError,
    InvalidInput,
    NotFound,
    StoreRejected,
    StoreUnavailable,
)
from shared.ports import ROWS_PER_TRANSACTION, BatchSaved, RowWrite, SavedSiteSync, batch_release

logger = logging.getLogger(__name__)

_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (
    name TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    release_id TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    published  INTEGER NOT NULL DEFAULT 0,
    pushed_key TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    tags       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_listing ON releases (published, pushed_key);
CREATE INDEX IF NOT EXISTS releases_repository ON releases (repository, pushed_key);
CREATE INDEX IF NOT EXISTS releases_digest ON releases (digest);
CREATE TABLE IF NOT EXISTS site_syncs (
    release_id TEXT NOT NULL,
    site       TEXT NOT NULL,
    doc        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    saved      INTEGER NOT NULL DEFAULT 0,
    pushed_key TEXT NOT NULL,
    PRIMARY KEY (release_id, site)
);
CREATE INDEX IF NOT EXISTS site_syncs_by_site ON site_syncs (site, pushed_key);
CREATE TABLE IF NOT EXISTS evidence (
    release_id  TEXT NOT NULL,
    site        TEXT NOT NULL,
    evidence_id TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    doc         TEXT NOT NULL,
    PRIMARY KEY (release_id, evidence_id)
);
CREATE INDEX IF NOT EXISTS evidence_by_time ON evidence (release_id, observed_at, evidence_id);
CREATE TABLE IF NOT EXISTS site_runtimes (
    site    TEXT PRIMARY KEY,
    doc     TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS site_ledger_days (
    day     TEXT NOT NULL,
    site    TEXT NOT NULL,
    figures TEXT NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (day, site)
);
"""


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _BUSY_CODES:
        return True
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the C type cannot)."""


class SqliteDatabase:
    """Per-thread connections to one WAL-mode SQLite file, with the single point where driver
    errors become acrsync errors (``unavailable`` for lock contention, ``rejected`` for the rest).

    Shared by the state store and the job queue so both open, lock and translate the same way.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        schema: str,
        what: str,
        unavailable: type[AcrSyncError],
        rejected: type[AcrSyncError],
        busy_timeout: float = 5.0,
    ) -> None:
        if str(path) in {"", ":memory:"} or str(path).startswith("file::memory:"):
            # Every thread opens its own connection, so an in-memory database would split in pieces.
            raise ConfigurationError(f"{what} needs a database file path, not an in-memory database")
        self._path = str(path)
        self._what = what
        self._unavailable = unavailable
        self._rejected = rejected
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        # Weak, so a finished thread's connection is freed (and closed) with its thread-local.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        with self._translate("open"):
            conn = self._connection()
            conn.executescript(schema)
        logger.debug("opened %s at %s", what, self._path)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                logger.warning("closing a %s connection failed", self._what, exc_info=True)

    @contextmanager
    def read(self, operation: str) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode: each statement sees one consistent WAL snapshot."""
        with self._translate(operation):
            yield self._connection()

    @contextmanager
    def write(self, operation: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back when it
        raises anything (so a failed precondition leaves nothing behind)."""
        with self._translate(operation):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed busy leaves the transaction open; roll it back too, or the
                # thread's connection could never begin another one.
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.warning("rolling back %s on %s failed", operation, self._what, exc_info=True)
                raise

    @contextmanager
    def _translate(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            if _is_busy(exc):
                logger.warning("%s busy during %s: %s", self._what, operation, exc)
                raise self._unavailable(f"{self._what} is busy ({operation}); retry later") from exc
            logger.error("%s refused %s: %s", self._what, operation, exc)
            raise self._rejected(f"{self._what} refused {operation}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if self._closed:
            raise self._rejected(f"{self._what} is closed")
        if conn is not None:
            return conn
        # check_same_thread=False only so close() may close every thread's connection; each
        # connection is otherwise used by the thread that opened it.
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL with synchronous=NORMAL survives process crashes; only an OS crash may lose the
            # last commits, which every caller already tolerates (events and jobs are redelivered).
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            if self._closed:
                conn.close()
                raise self._rejected(f"{self._what} is closed")
            self._connections.add(conn)
        self._local.conn = conn
        return conn


def _etag(version: int) -> str:
    return f'W/"{version}"'


def _pushed_key(release: Release | SiteSync, release_id: str) -> str:
    return codec.inverted_time_key(release.pushed_at) + "|" + release_id


def _due_key(row: SiteSync) -> int | None:
    due = row.due_at
    return None if due is None else _micros(due)


def _micros(value: datetime) -> int:
    # Exact integer arithmetic: a float timestamp can misorder observations a microsecond apart.
    return (value - _EPOCH) // timedelta(microseconds=1)


def _check_page_size(page_size: int) -> None:
    if not isinstance(page_size, int) or page_size < 1:
        raise InvalidInput("INVALID_PAGE_SIZE", "page_size must be a positive integer")


class SqliteStateStore:
    """:class:`~shared.ports.StateStore` on one SQLite file; safe to share between threads and
    between processes on one host (SQLite's file locks serialise the writers)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self._db = SqliteDatabase(
            path,
            schema=_SCHEMA,
            what="state store",
            unavailable=StoreUnavailable,
            rejected=StoreRejected,
            busy_timeout=busy_timeout,
        )
        self._add_due_index()

    def _add_due_index(self) -> None:
        """The due index (a column beside the row document) on a file made before it existed."""
        with self._db.write("add the due index") as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(site_syncs)")}
            if "due_key" not in columns:
                conn.execute("ALTER TABLE site_syncs ADD COLUMN due_key INTEGER")
            conn.execute("CREATE INDEX IF NOT EXISTS site_syncs_due ON site_syncs (release_id, due_key)")

    def close(self) -> None:
        self._db.close()

    # -- sites ---------------------------------------------------------------------------------
    def upsert_sites(self, sites: Sequence[Site]) -> None:
        docs = [(s.name, codec.dump_document(codec.site_to_doc(s), what=f"site {s.name}")) for s in sites]
        if not docs:
            return
        with self._db.write("upsert sites") as conn:
            conn.executemany(
                "INSERT INTO sites (name, doc) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                docs,
            )

    def get_site(self, name: str) -> Site:
        with self._db.read("get site") as conn:
            found = conn.execute("SELECT doc FROM sites WHERE name = ?", (name,)).fetchone()
        if found is None:
            raise NotFound(f"site {name!r} does not exist")
        return codec.site_from_doc(codec.load_document(found[0]))

    def list_sites(self) -> list[Site]:
        with self._db.read("list sites") as conn:
            rows = conn.execute("SELECT doc FROM sites ORDER BY name").fetchall()
        return [codec.site_from_doc(codec.load_document(doc)) for (doc,) in rows]

    def delete_site(self, name: str) -> None:
        with self._db.write("delete site") as conn:
            conn.execute("DELETE FROM sites WHERE name = ?", (name,))

    # -- releases ------------------------------------------------------------------------------
    def create_release(self, release: Release) -> Versioned[Release]:
        release_id = release.release_id
        doc = codec.dump_release(release)
        with self._db.write("create release") as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO releases (release_id, doc, version, published, pushed_key, repository,"
                " digest, tags) VALUES (?, ?, 1, 0, ?, ?, ?, ?)",
                (release_id, doc, *self._release_columns(release, release_id)),
            ).rowcount
        if not inserted:
            raise AlreadyExists(f"release {release_id} already exists")
        return Versioned(release, _etag(1))

    def get_release(self, release_id: str) -> Versioned[Release]:
        with self._db.read("get release") as conn:
            found = conn.execute("SELECT doc, version FROM releases WHERE release_id = ?", (release_id,)).fetchone()
        if found is None:
            raise NotFound(f"release {release_id} does not exist")
        return Versioned(codec.release_from_doc(codec.load_document(found[0])), _etag(found[1]))

    def replace_release(self, release: Release, *, etag: str) -> Versioned[Release]:
        doc = codec.dump_release(release)
        with self._db.write("replace release") as conn:
            version = self._replace_header(conn, release, doc, etag)
        return Versioned(release, _etag(version))

    def publish_release(self, release: Release) -> None:
        # The published flag and the listing columns live outside the versioned document, so
        # publishing never invalidates an ETag another writer holds.
        release_id = release.release_id
        with self._db.write("publish release") as conn:
            found = conn.execute("SELECT tags FROM releases WHERE release_id = ?", (release_id,)).fetchone()
            if found is None:
                raise NotFound(f"release {release_id} does not exist")
            tags = sorted(set(json.loads(found[0])) | release.tags)
            conn.execute(
                "UPDATE releases SET published = 1, tags = ? WHERE release_id = ?", (json.dumps(tags), release_id)
            )

    def is_release_published(self, release_id: str) -> bool:
        with self._db.read("read release") as conn:
            found = conn.execute("SELECT published FROM releases WHERE release_id = ?", (release_id,)).fetchone()
        return bool(found and found[0])

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
        filters = {"repository": repository, "tag": tag, "digest": digest}
        after = codec.continuation_after(continuation, filters=filters) or ""
        sql = "SELECT doc, pushed_key FROM releases WHERE published = 1 AND pushed_key > ?"
        args: list[Any] = [after]
        if repository is not None:
            sql += " AND repository = ?"
            args.append(repository)
        if digest is not None:
            sql += " AND digest = ?"
            args.append(digest)
        if tag is not None:
            sql += " AND EXISTS (SELECT 1 FROM json_each(releases.tags) WHERE json_each.value = ?)"
            args.append(tag)
        sql += " ORDER BY pushed_key LIMIT ?"
        args.append(page_size + 1)
        with self._db.read("list releases") as conn:
            rows = conn.execute(sql, args).fetchall()
        items = [codec.release_from_doc(codec.load_document(doc)) for doc, _ in rows[:page_size]]
        return Page(items, self._next_token(rows, page_size, filters))

    # -- site-sync rows ------------------------------------------------------------------------
    def add_site_syncs(self, rows: Sequence[SiteSync]) -> int:
        prepared = sorted(
            (
                (
                    row.release_id,
                    row.site,
                    codec.dump_document(codec.site_sync_to_doc(row), what=f"site sync {row.release_id}/{row.site}"),
                    _pushed_key(row, row.release_id),
                    _due_key(row),
                )
                for row in rows
            ),
            key=lambda item: item[0],
        )
        created = 0
        for _, group in groupby(prepared, key=lambda item: item[0]):
            batch = list(group)
            for start in range(0, len(batch), ROWS_PER_TRANSACTION):
                with self._db.write("add site syncs") as conn:
                    before = conn.total_changes
                    conn.executemany(
                        "INSERT OR IGNORE INTO site_syncs (release_id, site, doc, version, saved, pushed_key, due_key)"
                        " VALUES (?, ?, ?, 1, 0, ?, ?)",
                        batch[start : start + ROWS_PER_TRANSACTION],
                    )
                    created += conn.total_changes - before
        return created

    def get_site_sync(self, release_id: str, site: str) -> Versioned[SiteSync]:
        with self._db.read("get site sync") as conn:
            found = conn.execute(
                "SELECT doc, version FROM site_syncs WHERE release_id = ? AND site = ?", (release_id, site)
            ).fetchone()
        if found is None:
            raise NotFound(f"site sync {release_id}/{site} does not exist")
        return Versioned(codec.site_sync_from_doc(codec.load_document(found[0])), _etag(found[1]))

    def list_site_syncs(self, release_id: str) -> list[Versioned[SiteSync]]:
        with self._db.read("list site syncs") as conn:
            rows = conn.execute(
                "SELECT doc, version FROM site_syncs WHERE release_id = ? ORDER BY site", (release_id,)
            ).fetchall()
        return [Versioned(codec.site_sync_from_doc(codec.load_document(doc)), _etag(v)) for doc, v in rows]

    def release_version(self, release_id: str) -> str:
        # A row's version only grows, so (rows, sum of row versions) changes with every row write.
        with self._db.read("release version") as conn:
            found = conn.execute(
                "SELECT version, (SELECT count(*) || '.' || coalesce(sum(version), 0) FROM site_syncs"
                " WHERE release_id = ?) FROM releases WHERE release_id = ?",
                (release_id, release_id),
            ).fetchone()
        if found is None:
            raise NotFound(f"release {release_id} does not exist")
        return f"{found[0]}.{found[1]}"

    def save_site_sync(
        self,
        row: SiteSync,
        *,
        etag: str,
        evidence: Sequence[Evidence] = (),
        release: Versioned[Release] | None = None,
        previous: SiteSync | None = None,
    ) -> SavedSiteSync:
        """Also raises NotFound when the row (or the given release header) does not exist, and
        InvalidInput when the release or evidence belong to another release than the row (the
        Table Storage adapter cannot commit across partitions, so neither does this one)."""
        name = f"site sync {row.release_id}/{row.site}"
        doc = codec.dump_document(codec.site_sync_to_doc(row), what=name)
        release_doc = None
        if release is not None:
            if release.value.release_id != row.release_id:
                raise InvalidInput("CROSS_RELEASE_WRITE", f"{name} cannot be saved with another release's header")
            release_doc = codec.dump_release(release.value)
        evidence_rows = self._evidence_rows(evidence)
        if any(ev[0] != row.release_id for ev in evidence_rows):
            raise InvalidInput("CROSS_RELEASE_WRITE", f"{name} cannot be saved with another release's evidence")

        with self._db.write("save site sync") as conn:
            found = conn.execute(
                "SELECT version FROM site_syncs WHERE release_id = ? AND site = ?", (row.release_id, row.site)
            ).fetchone()
            if found is None:
                raise NotFound(f"{name} does not exist")
            if _etag(found[0]) != etag:
                raise ConcurrencyConflict(f"{name} changed since it was read")
            release_etag = None
            if release is not None and release_doc is not None:
                release_etag = _etag(self._replace_header(conn, release.value, release_doc, release.etag))
            conn.execute(
                "UPDATE site_syncs SET doc = ?, version = version + 1, saved = 1, pushed_key = ?, due_key = ?"
                " WHERE release_id = ? AND site = ?",
                (doc, _pushed_key(row, row.release_id), _due_key(row), row.release_id, row.site),
            )
            self._insert_evidence(conn, evidence_rows)
            entry = ledger_change(row, previous)
            if entry is not None:
                self._write_ledger(conn, entry)
        return SavedSiteSync(row_etag=_etag(found[0] + 1), release_etag=release_etag)

    def save_site_sync_batch(self, writes: Sequence[RowWrite]) -> BatchSaved:
        batch_release(writes)
        saved: list[str] = []
        refused: list[str] = []
        for start in range(0, len(writes), ROWS_PER_TRANSACTION):
            chunk = writes[start : start + ROWS_PER_TRANSACTION]
            sites = [write.row.site for write in chunk]
            docs = [
                codec.dump_document(codec.site_sync_to_doc(w.row), what=f"site sync {w.row.release_id}/{w.row.site}")
                for w in chunk
            ]
            with self._db.write("save site syncs") as conn:
                if not all(self._row_matches(conn, write) for write in chunk):
                    refused.extend(sites)
                    continue  # nothing of the chunk is written: the transaction commits no change
                conn.executemany(
                    "UPDATE site_syncs SET doc = ?, version = version + 1, pushed_key = ?, due_key = ?"
                    " WHERE release_id = ? AND site = ?",
                    [
                        (doc, _pushed_key(w.row, w.row.release_id), _due_key(w.row), w.row.release_id, w.row.site)
                        for doc, w in zip(docs, chunk, strict=True)
                    ],
                )
                for write in chunk:
                    entry = ledger_change(write.row, write.previous)
                    if entry is not None:
                        self._write_ledger(conn, entry)
            saved.extend(sites)
        return BatchSaved(tuple(saved), tuple(refused))

    @staticmethod
    def _row_matches(conn: sqlite3.Connection, write: RowWrite) -> bool:
        found = conn.execute(
            "SELECT version FROM site_syncs WHERE release_id = ? AND site = ?", (write.row.release_id, write.row.site)
        ).fetchone()
        return found is not None and _etag(found[0]) == write.etag

    def seed_ledger(self, rows: Sequence[SiteSync]) -> None:
        entries = [entry for row in rows if (entry := ledger_change(row, None)) is not None]
        for start in range(0, len(entries), ROWS_PER_TRANSACTION * 5):
            with self._db.write("seed the site ledger") as conn:
                for entry in entries[start : start + ROWS_PER_TRANSACTION * 5]:
                    self._write_ledger(conn, entry, only_if_absent=True)

    @staticmethod
    def _write_ledger(conn: sqlite3.Connection, entry: LedgerEntry, *, only_if_absent: bool = False) -> None:
        day = ledger_day(entry.pushed_at)
        found = conn.execute(
            "SELECT figures, entries FROM site_ledger_days WHERE day = ? AND site = ?", (day, entry.site)
        ).fetchone()
        current = LedgerDay(day, entry.site)
        if found is not None:
            current = ledger_from_doc(
                day, entry.site, {"figures": json.loads(found[0]), "entries": json.loads(found[1])}
            )
        recorded = current.record(entry, only_if_absent=only_if_absent)
        if recorded is current:
            return
        doc = ledger_doc(recorded)
        conn.execute(
            "INSERT INTO site_ledger_days (day, site, figures, entries) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (day, site) DO UPDATE SET figures = excluded.figures, entries = excluded.entries",
            (
                day,
                entry.site,
                json.dumps(doc["figures"], separators=(",", ":")),
                json.dumps(doc["entries"], separators=(",", ":")),
            ),
        )

    def list_ledger(self, *, pushed_from: datetime, pushed_until: datetime) -> list[LedgerDay]:
        first, last = ledger_day(pushed_from), ledger_day(pushed_until)
        with_entries = first if starts_mid_day(pushed_from) else ""
        with self._db.read("list the site ledger") as conn:
            found = conn.execute(
                "SELECT day, site, figures, CASE WHEN day = ? THEN entries END FROM site_ledger_days"
                " WHERE day >= ? AND day <= ? ORDER BY day, site",
                (with_entries, first, last),
            ).fetchall()
        return [
            ledger_from_doc(
                day, site, {"figures": json.loads(figures), "entries": json.loads(entries) if entries else {}}
            )
            for day, site, figures, entries in found
        ]

    def list_due_site_syncs(self, release_id: str, *, due_by: datetime) -> list[Versioned[SiteSync]]:
        with self._db.read("list due site syncs") as conn:
            rows = conn.execute(
                "SELECT doc, version FROM site_syncs WHERE release_id = ? AND due_key <= ? ORDER BY site",
                (release_id, _micros(due_by)),
            ).fetchall()
        return [Versioned(codec.site_sync_from_doc(codec.load_document(doc)), _etag(v)) for doc, v in rows]

    def list_site_syncs_for_site(
        self, site: str, *, page_size: int = 100, continuation: str | None = None
    ) -> Page[SiteSync]:
        _check_page_size(page_size)
        filters = {"site": site}
        after = codec.continuation_after(continuation, filters=filters) or ""
        with self._db.read("list site syncs of a site") as conn:
            rows = conn.execute(
                "SELECT doc, pushed_key FROM site_syncs WHERE site = ? AND saved = 1 AND pushed_key > ?"
                " ORDER BY pushed_key LIMIT ?",
                (site, after, page_size + 1),
            ).fetchall()
        items = [codec.site_sync_from_doc(codec.load_document(doc)) for doc, _ in rows[:page_size]]
        return Page(items, self._next_token(rows, page_size, filters))

    # -- what runs at each site ----------------------------------------------------------------
    def get_site_runtime(self, site: str) -> Versioned[SiteRuntime]:
        with self._db.read("get site runtime") as conn:
            found = conn.execute("SELECT doc, version FROM site_runtimes WHERE site = ?", (site,)).fetchone()
        if found is None:
            raise NotFound(f"nothing was observed running at site {site!r} yet")
        return Versioned(runtime_from_doc(codec.load_document(found[0])), _etag(found[1]))

    def list_site_runtimes(self) -> list[SiteRuntime]:
        with self._db.read("list site runtimes") as conn:
            rows = conn.execute("SELECT doc FROM site_runtimes ORDER BY site").fetchall()
        return [runtime_from_doc(codec.load_document(doc)) for (doc,) in rows]

    def save_site_runtime(self, runtime: SiteRuntime, *, etag: str | None) -> str:
        doc = codec.dump_document(runtime_to_doc(runtime), what=f"runtime of site {runtime.site}")
        with self._db.write("save site runtime") as conn:
            if etag is None:
                written = conn.execute(
                    "INSERT OR IGNORE INTO site_runtimes (site, doc, version) VALUES (?, ?, 1)", (runtime.site, doc)
                ).rowcount
                version = 1
            else:
                found = conn.execute("SELECT version FROM site_runtimes WHERE site = ?", (runtime.site,)).fetchone()
                written = 0
                if found is not None and _etag(found[0]) == etag:
                    version = found[0] + 1
                    written = conn.execute(
                        "UPDATE site_runtimes SET doc = ?, version = ? WHERE site = ?", (doc, version, runtime.site)
                    ).rowcount
        if not written:
            raise ConcurrencyConflict(f"the runtime of site {runtime.site} changed since it was read")
        return _etag(version)

    # -- evidence ------------------------------------------------------------------------------
    def append_evidence(self, evidence: Sequence[Evidence]) -> int:
        prepared = self._evidence_rows(evidence)
        if not prepared:
            return 0
        with self._db.write("append evidence") as conn:
            return self._insert_evidence(conn, prepared)

    def list_evidence(self, release_id: str, *, site: str | None = None) -> list[Evidence]:
        sql = "SELECT doc FROM evidence WHERE release_id = ?"
        args: list[Any] = [release_id]
        if site is not None:
            sql += " AND site = ?"
            args.append(site)
        with self._db.read("list evidence") as conn:
            rows = conn.execute(sql + " ORDER BY observed_at, evidence_id", args).fetchall()
        return [codec.evidence_from_doc(codec.load_document(doc)) for (doc,) in rows]

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _release_columns(release: Release, release_id: str) -> tuple[str, str, str, str]:
        return (
            _pushed_key(release, release_id),
            release.repository,
            release.digest,
            json.dumps(sorted(release.tags)),
        )

    def _replace_header(
        self,
        conn: sqlite3.Connection,
        release: Release,
        doc: str,
        etag: str,
    ) -> int:
        """Write the header iff ``etag`` matches; returns the new version. Runs inside a write."""
        release_id = release.release_id
        found = conn.execute("SELECT version FROM releases WHERE release_id = ?", (release_id,)).fetchone()
        if found is None:
            raise NotFound(f"release {release_id} does not exist")
        if _etag(found[0]) != etag:
            raise ConcurrencyConflict(f"release {release_id} changed since it was read")
        conn.execute(
            "UPDATE releases SET doc = ?, version = version + 1, pushed_key = ?, repository = ?, digest = ?, tags = ?"
            " WHERE release_id = ?",
            (doc, *self._release_columns(release, release_id), release_id),
        )
        return int(found[0]) + 1

    @staticmethod
    def _evidence_rows(evidence: Sequence[Evidence]) -> list[tuple[str, str, str, int, str]]:
        return [
            (
                ev.release_id,
                ev.site,
                ev.evidence_id,
                _micros(ev.observed_at),
                codec.dump_document(codec.evidence_to_doc(ev), what=f"evidence {ev.evidence_id}"),
            )
            for ev in evidence
        ]

    @staticmethod
    def _insert_evidence(conn: sqlite3.Connection, rows: list[tuple[str, str, str, int, str]]) -> int:
        if not rows:
            return 0
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO evidence (release_id, site, evidence_id, observed_at, doc) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return conn.total_changes - before

    @staticmethod
    def _next_token(rows: list[Any], page_size: int, filters: dict[str, Any]) -> str | None:
        if len(rows) <= page_size:
            return None
        return codec.encode_continuation({"after": rows[page_size - 1][1]}, filters=filters)
