"""Site-worker benchmark: one push to N continuous-sync sites, every check PENDING -> SYNCED.

The N first jobs go through the SQLite job queue and are handled by ``LocalRuntime.process_available``
(one thread) and by T worker threads (each receiving one message at a time and calling
``LocalRuntime.handle_job``, as the runtime's own workers do), on the SQLite store and on the Table
Storage store on Azurite. Per run it prints jobs/s, store operations per job at the port against the
floor (1 read + 1 conditional write + 1 evidence append per transition = 3), HTTP requests per job
to Table Storage, ETag conflicts retried, and a raw baseline in the same run: a loop doing exactly
one read, one conditional write and one evidence insert per row with the same backend client, at
the same thread count.

    .venv/bin/python bench/worker.py                      # N = 1,000; T = 1, 4 and 8
    .venv/bin/python bench/worker.py --sites 200 --threads 1 4

ARM is a fake ConnectedRegistryReader that answers at once with a fixed state (Online, lastSyncTime
after the push, no sync token), so ARM latency does not dominate; events go to an in-memory sink
that counts them.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from itertools import zip_longest
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.core import MatchConditions
from azure.data.tables import TableServiceClient, UpdateMode

from bench._common import (
    NOW,
    PUSHED_AT,
    REGISTRY,
    SUBSCRIPTION,
    TOPIC,
    Counting,
    HttpCounter,
    RunningClock,
    bench_settings,
    push_event,
    sites,
)
from shared.adapters import codec
from shared.adapters.azure_tables import AzureTableStore
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap
from shared.config import Settings
from shared.domain.acr_events import decode_event, image_pushed_event
from shared.domain.decisions import Observations, apply_decision, decide_check
from shared.domain.model import Site
from shared.domain.observations import (
    BasicCredentials,
    ConnectedRegistryState,
    ConnectionState,
    ManifestObservation,
    OutboundEvent,
    OutboundEventType,
    SyncScope,
)
from shared.domain.states import SyncState
from shared.local.runtime import LocalRuntime
from shared.ports import OutgoingMessage, SendReport
from shared.services.fanout import plan_fanout
from shared.services.ingest import _candidate, ingest_event
from tests.support.azurite import start_azurite

FLOOR = 3  # 1 read + 1 conditional write + 1 evidence append per transition


# -- fakes ---------------------------------------------------------------------------------------


def connected_registry_state() -> ConnectedRegistryState:
    return ConnectedRegistryState(
        resource_id=connected_registry_id(0),
        name="edge",
        connection_state=ConnectionState.ONLINE,
        observed_at=NOW,
        mode="ReadOnly",
        provisioning_state="Succeeded",
        last_activity_time=NOW - timedelta(seconds=5),
        last_sync_time=NOW - timedelta(seconds=10),  # after the push at 09:41:12
        token_id=None,
    )


class FixedArm:
    """A ConnectedRegistryReader that answers at once with one fixed state (no scope lookups): synced
    after the push, last heard from a few seconds ago whatever the clock says."""

    def __init__(self) -> None:
        self.state = connected_registry_state()
        self.clock = RunningClock()
        self.calls = 0
        self._lock = threading.Lock()

    def get_connected_registry(self, resource_id: str) -> ConnectedRegistryState:
        with self._lock:
            self.calls += 1
        now = self.clock.now()
        return replace(self.state, observed_at=now, last_activity_time=now - timedelta(seconds=5))

    def get_sync_scope(self, token_id: str) -> SyncScope:
        raise AssertionError("the fixed state has no sync token: no scope lookups expected")


class NoProbe:
    def probe(
        self, endpoint: str, repository: str, digest: str, *, credentials: BasicCredentials | None = None
    ) -> ManifestObservation:
        raise AssertionError("the sites have no endpoint: no probes expected")


class NoCredentials:
    def get_credentials(self, site: str) -> BasicCredentials | None:
        return None


class CountingEvents:
    """An EventSink that only counts, by type and by distinct id."""

    def __init__(self) -> None:
        self.published: Counter[OutboundEventType] = Counter()
        self.ids: dict[OutboundEventType, set[str]] = {}
        self.subjects: dict[OutboundEventType, list[str]] = {}
        self._lock = threading.Lock()

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        with self._lock:
            for event in events:
                self.published[event.type] += 1
                self.ids.setdefault(event.type, set()).add(event.event_id)
                self.subjects.setdefault(event.type, []).append(event.subject)


# -- the workload --------------------------------------------------------------------------------


def connected_registry_id(index: int) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-edge/providers/Microsoft.ContainerRegistry"
        f"/registries/contosoacr/connectedRegistries/edge{index:05d}"
    )


@dataclass
class Run:
    backend: str
    threads: int
    jobs: int
    seconds: float
    store_calls: Counter[str]
    store_spent: Counter[str]
    conflicts: int
    queue_calls: Counter[str]
    http: Counter[str] = field(default_factory=Counter)
    raw_seconds: float = 0.0
    raw_http: int = 0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def raw_per_s(self) -> float:
        return self.jobs / self.raw_seconds

    def row(self) -> str:
        store_ops = sum(self.store_calls.values()) / self.jobs
        http = f"{sum(self.http.values()) / self.jobs:5.2f} (raw {self.raw_http / self.jobs:.2f})" if self.http else "-"
        in_store = sum(self.store_spent.values()) / (self.seconds * self.threads)
        return (
            f"{self.backend:8} {self.threads:>3} {self.jobs_per_s:8.0f} {self.raw_per_s:10.0f} "
            f"{self.raw_per_s / self.jobs_per_s:8.1f}x {store_ops:7.2f} = {store_ops / FLOOR:4.2f}x "
            f"{http:>17} {self.conflicts:>9} {sum(self.queue_calls.values()) / self.jobs:9.2f} {in_store:8.0%}"
        )


def run_workers(runtime: LocalRuntime, threads: int) -> int:
    """Handle every job with ``threads`` workers; returns how many messages were handled."""
    if threads == 1:
        return runtime.process_available()
    queue = runtime.services.queue
    lock = threading.Lock()
    state = {"in_flight": 0, "handled": 0}
    failures: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                state["in_flight"] += 1
            messages = []
            try:
                messages = queue.receive_messages(max_count=1)
                for message in messages:
                    runtime.handle_job(message)
            except BaseException as exc:  # surfaced below
                failures.append(exc)
                return
            finally:
                with lock:
                    state["in_flight"] -= 1
                    state["handled"] += len(messages)
                    idle = state["in_flight"] == 0
            if not messages:
                if idle:
                    return  # nothing visible and nobody holds a message that could come back
                time.sleep(0.02)  # idle: others still hold messages that may come back

    workers = [threading.Thread(target=work, name=f"bench-worker-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    return state["handled"] + runtime.process_available()  # anything a late abandon put back


def settle(runtime: LocalRuntime) -> None:
    """Handle what the queue still holds as it comes due (release summaries come at the end of their
    interval); not timed."""
    deadline = time.monotonic() + 120
    while runtime.services.queue.count() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        if not runtime.process_available():
            time.sleep(0.2)


def run_acrsync(backend: str, store: Any, queue_path: Path, count: int, threads: int, http: HttpCounter) -> Run:
    store.upsert_sites(sites(count, connected_registry=connected_registry_id))
    counting_store = Counting(store)
    clock = RunningClock()
    queue = SqliteJobQueue(queue_path, clock=clock.now)
    counting_queue = Counting(queue)
    events, arm = CountingEvents(), FixedArm()
    services = bootstrap(
        bench_settings(),
        store=counting_store,
        queue=counting_queue,
        clock=clock,
        arm=arm,
        probe=NoProbe(),
        credentials=NoCredentials(),
        events=events,
    )
    services.catalog.sites()  # a warm process
    fanned = ingest_event(services, push_event())
    assert fanned.jobs_sent == count and fanned.release_id is not None, fanned
    release_id = fanned.release_id

    counting_store.reset()
    counting_queue.reset()
    http.reset()
    started = time.perf_counter()
    handled = run_workers(LocalRuntime(services), threads)
    elapsed = time.perf_counter() - started
    settle(LocalRuntime(services))  # the release summary, due at the end of its interval
    run = Run(
        backend,
        threads,
        count,
        elapsed,
        counting_store.calls,
        counting_store.spent,
        counting_store.conflicts,
        counting_queue.calls,
        http=Counter(http.requests),
    )

    # Everything ended where it must, exactly once.
    assert handled >= count, (handled, count)
    assert arm.calls == count, (arm.calls, count)
    rows = store.list_site_syncs(release_id)
    assert len(rows) == count and all(r.value.state is SyncState.SYNCED for r in rows), Counter(
        r.value.state for r in rows
    )
    header = store.get_release(release_id).value
    assert dict(header.counts) == {SyncState.SYNCED: count}, header.counts
    assert events.published[OutboundEventType.RELEASE_READY] == 1, events.published
    assert events.subjects[OutboundEventType.RELEASE_READY] == [f"releases/{release_id}"]
    assert len(events.ids[OutboundEventType.SITE_SYNCED]) == count, events.published
    assert len(store.list_evidence(release_id)) == count
    assert queue.count() == 0 and queue.count(dead_letter=True) == 0
    queue.close()
    store.close()
    return run


# -- the raw baseline ----------------------------------------------------------------------------


def raw_documents(count: int) -> tuple[str, list[tuple[str, str, str, str, str]]]:
    """The release id and, per site, (site, row doc before, row doc after, evidence id, evidence doc):
    the very documents a check writes, made by the same decision code."""
    release = _candidate(decode_event(push_event()))  # type: ignore[arg-type]
    all_sites = sites(count, connected_registry=connected_registry_id)
    plan = plan_fanout(release, all_sites, NOW)
    seen = Observations(now=NOW, arm=connected_registry_state())
    docs = []
    for site, row in zip(all_sites, plan.rows, strict=True):
        change = apply_decision(row, decide_check(row, site, seen), NOW)
        evidence = change.evidence[0]
        docs.append(
            (
                site.name,
                json.dumps(codec.site_sync_to_doc(row)),
                json.dumps(codec.site_sync_to_doc(change.row)),
                evidence.evidence_id,
                json.dumps(codec.evidence_to_doc(evidence)),
            )
        )
    return release.release_id, docs


def in_threads(items: Sequence[Any], threads: int, work: Callable[[Sequence[Any]], None]) -> float:
    """Run ``work`` on ``threads`` interleaved slices of ``items``; wall seconds."""
    slices = [items[i::threads] for i in range(threads)]
    failures: list[BaseException] = []

    def guarded(part: Sequence[Any]) -> None:
        try:
            work(part)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    workers = [threading.Thread(target=guarded, args=(part,)) for part in slices]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed


def raw_sqlite(path: Path, count: int, threads: int) -> float:
    """Per row, in autocommit with the store's pragmas: SELECT; UPDATE ... WHERE version = read; INSERT."""
    pk, docs = raw_documents(count)

    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    setup = connect()
    setup.execute("CREATE TABLE s (pk TEXT, site TEXT, doc TEXT, version INTEGER, PRIMARY KEY (pk, site))")
    setup.execute("CREATE TABLE e (pk TEXT, id TEXT, doc TEXT, PRIMARY KEY (pk, id))")
    setup.execute("BEGIN IMMEDIATE")
    setup.executemany("INSERT INTO s VALUES (?, ?, ?, 1)", [(pk, site, before) for site, before, *_ in docs])
    setup.execute("COMMIT")
    setup.close()

    def work(part: Sequence[tuple[str, str, str, str, str]]) -> None:
        db = connect()
        for site, _, after, evidence_id, evidence in part:
            _, version = db.execute("SELECT doc, version FROM s WHERE pk = ? AND site = ?", (pk, site)).fetchone()
            updated = db.execute(
                "UPDATE s SET doc = ?, version = version + 1 WHERE pk = ? AND site = ? AND version = ?",
                (after, pk, site, version),
            ).rowcount
            assert updated == 1
            db.execute("INSERT INTO e VALUES (?, ?, ?)", (pk, evidence_id, evidence))
        db.close()

    return in_threads(docs, threads, work)


def raw_tables(conn: str, count: int, threads: int) -> tuple[float, int]:
    """Per row, with the same SDK client: get_entity; update_entity IfNotModified; create_entity."""
    pk, docs = raw_documents(count)
    http = HttpCounter()
    service = TableServiceClient.from_connection_string(conn, raw_request_hook=http)
    table = service.create_table("raw" + secrets.token_hex(4))
    for start in range(0, len(docs), 100):
        table.submit_transaction(
            [
                ("create", {"PartitionKey": pk, "RowKey": "s|" + site, "doc": before})
                for site, before, *_ in docs[start : start + 100]
            ]
        )
    http.reset()

    def work(part: Sequence[tuple[str, str, str, str, str]]) -> None:
        for site, _, after, evidence_id, evidence in part:
            entity = table.get_entity(pk, "s|" + site)
            table.update_entity(
                {"PartitionKey": pk, "RowKey": "s|" + site, "doc": after},
                mode=UpdateMode.REPLACE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
            table.create_entity({"PartitionKey": pk, "RowKey": f"e|{site}|{evidence_id}", "doc": evidence})

    elapsed = in_threads(docs, threads, work)
    service.close()
    return elapsed, http.total


# -- contention: one release against the same jobs spread over many ---------------------------


def contention_sites(count: int, releases: int) -> list[Site]:
    """``count`` continuous-sync sites; site i approves only repository ``inspection/r<i % releases>``,
    so one push per repository spreads the same ``count`` jobs over ``releases`` releases."""
    return [
        Site(
            name=f"site-{i:05d}",
            repositories=(f"inspection/r{i % releases}",),
            connected_registry=connected_registry_id(i),
        )
        for i in range(count)
    ]


def contention_push(repository: str) -> dict[str, Any]:
    return image_pushed_event(
        event_id=secrets.token_hex(16),
        topic=TOPIC,
        registry=REGISTRY,
        repository=repository,
        tag="1.4.2",
        digest="sha256:" + secrets.token_hex(32),
        at=PUSHED_AT,
        size=1574,
    )


class Collecting:
    """A JobQueue that keeps what is sent, so the fan-outs' jobs can be handed to the real queue
    interleaved: release by release, the first workers would otherwise all start on one release."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[OutgoingMessage] = []

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> Any:
        self.sent.extend(messages)
        return SendReport(len(messages), 1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def release_interleaved(self) -> None:
        by_release: dict[object, list[OutgoingMessage]] = {}
        for message in self.sent:
            by_release.setdefault(message.properties.get("release_id"), []).append(message)
        rounds = zip_longest(*by_release.values())
        self.inner.send_messages([message for batch in rounds for message in batch if message is not None])


class Delayed:
    """A StateStore whose every call first waits ``seconds``: a round trip to a store further away."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self.seconds)
            return target(*args, **kwargs)

        return call


class GaveUp(logging.Handler):
    """Counts jobs whose row kept changing under every attempt (ConcurrencyConflict out of the check)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "ConcurrencyConflict" in record.getMessage():
            self.count += 1


@dataclass(frozen=True)
class Layout:
    """Where one contention run keeps its state: the store (a SQLite file or an Azurite table
    prefix), the queue file, the settings folder (one signing key for every worker)."""

    store: str
    target: str
    queue: Path
    data_dir: Path
    rtt: float

    def open_store(self) -> Any:
        if self.store == "sqlite":
            store: Any = SqliteStateStore(Path(self.target))
        else:
            connection, prefix = self.target.split("|", 1)
            hooks: dict[str, Any] = {}
            if self.rtt:
                hooks["raw_request_hook"] = lambda _request: time.sleep(self.rtt)
            store = AzureTableStore.from_connection_string(connection, table_prefix=prefix, **hooks)
        if self.rtt and self.store == "sqlite":
            store = Delayed(store, self.rtt)
        return store


def contention_services(data_dir: Path, store: Any, queue: Any) -> Any:
    """The services of one contention process: fixed ARM, no probes, counted events, a running clock."""
    return bootstrap(
        Settings(data_dir=data_dir),
        store=store,
        queue=queue,
        clock=RunningClock(),
        arm=FixedArm(),
        probe=NoProbe(),
        credentials=NoCredentials(),
        events=CountingEvents(),
    )


def contention_worker(layout: Layout, start: Any, results: Any) -> None:
    """One worker process: one message at a time, as a Service Bus session trigger hands them,
    until the queue holds nothing."""
    store = Counting(layout.open_store())
    queue = SqliteJobQueue(layout.queue, clock=RunningClock().now)
    services = contention_services(layout.data_dir, store, queue)
    services.catalog.sites()  # a warm process
    gave_up = GaveUp()
    logging.getLogger("shared.local.runtime").addHandler(gave_up)
    runtime = LocalRuntime(services)
    handled = redelivered = 0
    last_check = None
    start.wait()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        messages = queue.receive_messages(max_count=1)
        if not messages:
            if queue.count() == 0:
                break
            time.sleep(0.005)
            continue
        for message in messages:
            redelivered += message.delivery_count > 1
            runtime.handle_job(message)
            handled += 1
            if not (message.session_id or "").startswith("release:"):  # a site check, not a summary
                last_check = time.time()
    events: CountingEvents = services.events  # type: ignore[assignment]
    results.put(
        {
            "conflicts": store.conflicts,
            "calls": dict(store.calls),
            "gave_up": gave_up.count,
            "redelivered": redelivered,
            "handled": handled,
            "ready": events.published[OutboundEventType.RELEASE_READY],
            "last_check": last_check,
        }
    )
    queue.close()
    store.close()


@dataclass
class ContentionRun:
    releases: int
    jobs: int
    seconds: float
    conflicts: int
    gave_up: int
    redelivered: int
    dead_lettered: int
    store_calls: Counter[str]

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    def row(self) -> str:
        calls = sum(self.store_calls.values()) / self.jobs
        return (
            f"{self.releases:>8} {self.jobs:>5} {self.jobs_per_s:8.1f} {self.conflicts / self.jobs:10.3f} "
            f"{self.gave_up:>9} {self.redelivered:>11} {self.dead_lettered:>13} {calls:12.2f}"
        )


def run_contention(
    store_kind: str, target: str, workdir: Path, sites: int, workers: int, releases: int, rtt: float
) -> ContentionRun:
    """The same ``sites`` jobs on ``releases`` releases, handled by ``workers`` processes; verified
    afterwards: every in-scope row SYNCED (the others SKIPPED), each release's counts and one
    release.ready per release."""
    tag = secrets.token_hex(4)
    data_dir = workdir / f"settings-{tag}"
    layout = Layout(
        store_kind,
        str(workdir / f"store-{tag}.db") if store_kind == "sqlite" else f"{target}|c{tag}",
        workdir / f"queue-{tag}.db",
        data_dir,
        rtt,
    )
    setup = layout.open_store()
    if store_kind == "azurite":
        setup.ensure_tables()
    setup.upsert_sites(contention_sites(sites, releases))
    queue = SqliteJobQueue(layout.queue, clock=RunningClock().now)
    collecting = Collecting(queue)
    services = contention_services(data_dir, setup, collecting)
    assert services.signer is not None  # made here, once, so every worker signs with the same key
    release_ids = []
    for index in range(releases):
        fanned = ingest_event(services, contention_push(f"inspection/r{index}"))
        assert fanned.release_id is not None and fanned.jobs_sent == len(range(index, sites, releases)), fanned
        release_ids.append(fanned.release_id)
    collecting.release_interleaved()
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=contention_worker, args=(layout, start, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    time.sleep(1.0 + workers * 0.05)  # every worker built and waiting
    began = time.time()
    start.set()
    reports = [results.get(timeout=1200) for _ in processes]
    # Until the last site check ended: the release summaries that follow are due up to one interval later.
    elapsed = max(r["last_check"] or began for r in reports) - began
    for process in processes:
        process.join()
    run = ContentionRun(
        releases,
        sites,
        elapsed,
        sum(r["conflicts"] for r in reports),
        sum(r["gave_up"] for r in reports),
        sum(r["redelivered"] for r in reports),
        queue.count(dead_letter=True),
        sum((Counter(r["calls"]) for r in reports), Counter()),
    )
    for index, release_id in enumerate(release_ids):
        in_scope = len(range(index, sites, releases))
        expected = {SyncState.SYNCED: in_scope, SyncState.SKIPPED: sites - in_scope}
        expected = {state: n for state, n in expected.items() if n}
        states = Counter(row.value.state for row in setup.list_site_syncs(release_id))
        assert states == expected, (release_id, states)
        header = setup.get_release(release_id).value
        assert dict(header.counts) == expected, (release_id, header.counts)
    assert sum(r["ready"] for r in reports) == releases, [r["ready"] for r in reports]
    queue.close()
    setup.close()
    return run


def contention(args: argparse.Namespace) -> None:
    """``--store``: all jobs on one release against the same jobs spread over as many releases as
    workers, in the same run, each layout ``--repeat`` times in alternating order (on two cores eight
    processes and Azurite interfere: the median run of each layout is compared); the last line is
    the contention summary, with conflicts and exhausted jobs over every run of the one-release layout."""
    rtt = args.rtt_ms / 1000
    layouts = [args.releases] if args.releases > 1 else [1, args.workers]
    runs: dict[int, list[ContentionRun]] = {releases: [] for releases in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        azurite = start_azurite(workdir / "azurite") if args.store == "azurite" else None
        target = azurite.connection_string if azurite else ""
        try:
            for turn in range(args.repeat):
                # Alternate the order, so neither layout always runs on a warmer Azurite.
                for releases in layouts if turn % 2 == 0 else layouts[::-1]:
                    run = run_contention(args.store, target, workdir, args.sites, args.workers, releases, rtt)
                    runs[releases].append(run)
        finally:
            if azurite:
                azurite.stop()
    print(
        f"contention: {args.sites} jobs (each check PENDING -> SYNCED) on {args.store}, {args.workers} worker "
        f"processes, {args.rtt_ms:g} ms added per store request; the same jobs on one release and spread over "
        f"{args.workers} releases, {args.repeat} run(s) each in turn. Every run asserted: every row SYNCED, exact "
        "release counts, one release.ready per release."
    )
    print(
        f"{'releases':>8} {'jobs':>5} {'jobs/s':>8} {'conflicts/job':>13} {'exhausted':>9} {'redelivered':>11} "
        f"{'dead-lettered':>13} {'store calls/job':>15}"
    )
    for releases in layouts:
        for run in runs[releases]:
            print(run.row())
    first = runs[layouts[0]]
    jobs = sum(run.jobs for run in first)
    conflicts = sum(run.conflicts for run in first) / jobs
    exhausted = sum(run.gave_up + run.dead_lettered for run in first)
    if len(layouts) == 2:
        ratio = statistics.median(r.jobs_per_s for r in runs[1]) / statistics.median(
            r.jobs_per_s for r in runs[args.workers]
        )
        print(f"contention: conflicts_per_job={conflicts:.3f} exhausted={exhausted} one_release_vs_spread={ratio:.2f}")
    else:
        print(f"spread: conflicts_per_job={conflicts:.3f} exhausted={exhausted}")


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000, help="sites = jobs per run (default 1,000)")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 4, 8], help="worker threads per run")
    parser.add_argument(
        "--store",
        choices=["sqlite", "azurite"],
        help="only the contention run, on this store (without it: the table above, then the contention run "
        "on Azurite with 8 workers)",
    )
    parser.add_argument("--workers", type=int, default=8, help="worker processes of the contention run")
    parser.add_argument(
        "--releases",
        type=int,
        default=1,
        help="1: all jobs on one release, against the same jobs spread over --workers releases; N: only spread over N",
    )
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="delay added to every store request (ms)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each layout, in turn; the median counts")
    args = parser.parse_args()
    if args.store is not None:
        contention(args)
        return
    count = args.sites
    runs: list[Run] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        azurite = start_azurite(workdir / "azurite")
        try:
            for threads in args.threads:
                # SQLite: store and queue share one file, as `acrsync dev` runs them.
                db = workdir / f"acrsync-{threads}.db"
                run = run_acrsync("sqlite", SqliteStateStore(db), db, count, threads, HttpCounter())
                run.raw_seconds = raw_sqlite(workdir / f"raw-{threads}.db", count, threads)
                runs.append(run)

                http = HttpCounter()
                tables = AzureTableStore.from_connection_string(
                    azurite.connection_string, table_prefix="w" + secrets.token_hex(4), raw_request_hook=http
                )
                tables.ensure_tables()
                run = run_acrsync("azurite", tables, workdir / f"queue-{threads}.db", count, threads, http)
                run.raw_seconds, run.raw_http = raw_tables(azurite.connection_string, count, threads)
                runs.append(run)
        finally:
            azurite.stop()

    print(f"site worker: {count} jobs, one push to {count} continuous-sync sites, each check PENDING -> SYNCED")
    print("ARM: a fake ConnectedRegistryReader answering at once with a fixed state (Online, lastSyncTime after")
    print("the push, no sync token), so ARM latency is excluded; events: an in-memory counting sink; queue: the")
    print("SQLite job queue (on the SQLite store's own file; a separate file next to Azurite). Every run asserted:")
    print(f"{count} rows SYNCED, release counters {{SYNCED: {count}}}, one acrsync.release.ready, queue empty.")
    print("raw = 1 read + 1 conditional write + 1 evidence insert per row, same client, same thread count, no queue;")
    print(f"store ops = calls at the StateStore port (floor {FLOOR}); in store = store time / (wall x threads)")
    print()
    print(
        f"{'backend':8} {'thr':>3} {'jobs/s':>8} {'raw rows/s':>10} {'raw/ours':>9} {'store ops/job':>15} "
        f"{'HTTP req/job':>17} {'conflicts':>9} {'queue/job':>9} {'in store':>8}"
    )
    for run in runs:
        print(run.row())
    print()
    for run in runs:
        store = ", ".join(
            f"{name} {n / run.jobs:.2f} ({run.store_spent[name] / n * 1000:.2f} ms)"
            for name, n in sorted(run.store_calls.items())
        )
        queue = ", ".join(f"{name} {n / run.jobs:.2f}" for name, n in sorted(run.queue_calls.items()))
        http = ", ".join(f"{name} {n / run.jobs:.2f}" for name, n in sorted(run.http.items()))
        print(f"{run.backend:8} T={run.threads}: store calls/job (mean time per call): {store}")
        print(f"{'':8}      queue/job: {queue}" + (f" | HTTP/job: {http}" if http else ""))
    print(f"\ntotal {time.perf_counter() - began:.0f} s\n")
    args.store = "azurite"
    contention(args)


if __name__ == "__main__":
    main()
