"""API benchmark: the status API's big reads under 16 concurrent clients, on SQLite and on Table Storage (Azurite).

Stores M sites, one release with a row at every site (the release a pipeline polls), one with 3 rows
and N other published releases (``--rows-per-release`` rows each, default none), all written through
the StateStore port (create_release, add_site_syncs, publish_release); setup time is printed on its
own. Rows of the other releases are off by default: on Azurite each costs an entity-group
transaction (~5 ms of SDK CPU) and, since Azurite answers every query by scanning the whole table,
they slow every measured query down too, which real Table Storage (key-range reads) does not.

Then a real uvicorn server on a free loopback port serves the app of ``orchestrations.api.create_app`` and,
per backend, it measures:

* ``GET /api/releases/{id}`` (the M-site release) and ``GET /api/releases/{id}/readiness`` (default
  gate: a 202 pending answer), each as a full 200/202 and as an ``If-None-Match`` revalidation (304);
* ``GET /api/healthz`` on the same server in the same run (the framework's floor), and
* ``store.list_site_syncs(id)`` called directly (the same rows, one partition query, no HTTP), with
  the same number of threads and calls, in the same run.

Each measurement: C clients (default 16), each an ``httpx.Client`` on its own thread making K
requests (bounded by ``--max-seconds``); p50/p99 latency and requests/s, plus a 1-client p50 (the
unloaded cost). The clients run in a separate process so they do not share the server's GIL; CPU
seconds per request are reported for the server process, the client process and Azurite.

    .venv/bin/python bench/api.py                                   # M = 1,000 sites, N = 10,000 releases
    .venv/bin/python bench/api.py --releases 500 --sites 200 --requests 10
    .venv/bin/python bench/api.py --backends sqlite --rows-per-release 3

Rows are built directly (no fan-out, no site checks); the clock is fixed, so the site catalog is read
once per process and never refreshed during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import multiprocessing
import os
import pstats
import resource
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn
from azure.data.tables import TableServiceClient

from bench._common import NOW, REGISTRY, Counting, FixedClock, HttpCounter, bench_settings, sites
from orchestrations.api import create_app
from orchestrations.api import releases as routes
from orchestrations.api.conditional import json_bytes
from shared.adapters.azure_tables import AzureTableStore
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.domain.gate import GatePolicy, GateSelection
from shared.domain.model import Evidence, Release, Site, SiteSync
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.services import status
from tests.support.azurite import free_port, start_azurite

asgi_app = create_app()

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the data set --------------------------------------------------------------------------------


def digest() -> str:
    return "sha256:" + secrets.token_hex(32)


def big_release_rows(release: Release, all_sites: Sequence[Site]) -> list[SiteSync]:
    """A release two hours after its push: mostly SYNCED/VERIFIED, windowed sites waiting, a few
    PENDING, 5 % SKIPPED (tag policy); nothing blocked, so the default gate is pending (202)."""
    pushed, rows = release.pushed_at, []
    for i, site in enumerate(all_sites):
        base = SiteSync(
            release_id=release.release_id,
            site=site.name,
            repository=release.repository,
            digest=release.digest,
            pushed_at=pushed,
            state=SyncState.PENDING,
            reason=SyncReason.AWAITING_FIRST_CHECK,
            updated_at=pushed,
            queued_at=pushed,
        )
        if i % 20 == 0:
            row = replace(base, state=SyncState.SKIPPED, reason=SyncReason.TAG_NOT_ADMITTED)
        elif i % 7 == 0:
            row = base.moved_to(
                SyncState.WAITING_FOR_WINDOW,
                SyncReason.WINDOW_CLOSED,
                pushed + timedelta(seconds=5),
                expected_ready_at=NOW + timedelta(hours=13),
                next_check_at=NOW + timedelta(hours=10, minutes=2),
                evidence_source=EvidenceSource.SCHEDULE,
                checks=1,
            )
        elif i % 31 == 0:
            row = replace(base, next_check_at=NOW + timedelta(minutes=4), checks=3)
        else:
            at = pushed + timedelta(seconds=30 + i)
            row = base.moved_to(
                SyncState.SYNCED,
                SyncReason.SYNCED_AFTER_PUSH,
                at,
                evidence_source=EvidenceSource.ARM_LAST_SYNC,
                checks=1,
            )
            if i % 3 == 0:
                row = row.moved_to(
                    SyncState.VERIFIED,
                    SyncReason.MANIFEST_PRESENT,
                    at + timedelta(minutes=1),
                    evidence_source=EvidenceSource.OCI_PROBE,
                    checks=2,
                )
        rows.append(row)
    return rows


def big_release(all_sites: Sequence[Site], repository: str, tag: str) -> tuple[Release, list[SiteSync]]:
    release = Release(
        registry=REGISTRY,
        repository=repository,
        digest=digest(),
        pushed_at=NOW - timedelta(hours=2),
        tags=frozenset({tag, "stable"}),
        media_type="application/vnd.oci.image.index.v1+json",
        size=1574,
        actor="pipeline",
    )
    rows = big_release_rows(release, all_sites)
    counts = Counter(row.state for row in rows)
    return replace(release, counts=dict(counts)), rows


def synced_release(
    repository: str, pushed: datetime, tag: str, at: Sequence[Site]
) -> tuple[Release, list[SiteSync], list[Evidence]]:
    """A release SYNCED at the sites ``at``, with the evidence record of each row's change."""
    release = Release(
        registry=REGISTRY,
        repository=repository,
        digest=digest(),
        pushed_at=pushed,
        tags=frozenset({tag}),
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=1000,
        actor="pipeline",
        counts={SyncState.SYNCED: len(at)} if at else {},
    )
    synced_at = pushed + timedelta(minutes=1)
    rows = [
        SiteSync(
            release_id=release.release_id,
            site=site.name,
            repository=release.repository,
            digest=release.digest,
            pushed_at=pushed,
            state=SyncState.SYNCED,
            reason=SyncReason.SYNCED_AFTER_PUSH,
            updated_at=synced_at,
            synced_at=synced_at,
            evidence_source=EvidenceSource.ARM_LAST_SYNC,
            checks=1,
        )
        for site in at
    ]
    evidence = [
        Evidence(
            release_id=release.release_id,
            site=row.site,
            source=EvidenceSource.ARM_LAST_SYNC,
            observed_at=synced_at,
            recorded_at=synced_at,
            summary="the connected registry synced after the push",
            state_from=SyncState.PENDING,
            state_to=SyncState.SYNCED,
            reason=SyncReason.SYNCED_AFTER_PUSH,
            details={"lastSyncTime": synced_at.isoformat(), "connectionState": "Online"},
        )
        for row in rows
    ]
    return release, rows, evidence


def other_release(index: int, all_sites: Sequence[Site], rows: int) -> tuple[Release, list[SiteSync]]:
    release, synced, _ = synced_release(
        f"inspection/model-{index % 50:02d}", NOW - timedelta(hours=3, seconds=index), f"1.{index}.0", all_sites[:rows]
    )
    return release, synced


@dataclass
class Setup:
    sites_s: float = 0.0
    big_s: float = 0.0
    others_s: float = 0.0
    others: int = 0
    rows_per_other: int = 0
    history: int = 0
    threads: int = 1
    others_cpu: float = 0.0  # seconds of this process's CPU while storing the other releases
    others_azurite_cpu: float = 0.0
    raw_before_ms: float = 0.0  # 1-thread list_site_syncs p50 before the other releases were stored
    release_id: str = ""  # inspection/camera, N-1 at every site
    lidar_id: str = ""  # inspection/lidar, one site without N-1 and ``history`` older releases
    small_release_id: str = ""


def store_release(store: Any, release: Release, rows: Sequence[SiteSync], evidence: Sequence[Evidence] = ()) -> None:
    store.create_release(release)
    if rows:
        assert store.add_site_syncs(rows) == len(rows)
    if evidence:
        store.append_evidence(evidence)
    store.publish_release(release)


def store_everything(
    store: Any, site_count: int, args: argparse.Namespace, threads: int, azurite_pid: int | None
) -> Setup:
    releases, rows = args.releases, args.rows_per_release
    setup = Setup(others=releases, rows_per_other=rows, history=args.history, threads=threads)
    all_sites = sites(site_count, windowed_every=7, critical_every=50)
    started = time.perf_counter()
    store.upsert_sites(all_sites)
    setup.sites_s = time.perf_counter() - started

    started = time.perf_counter()
    # inspection/camera: the release under test, and its N-1 at every site (rollback ready everywhere).
    release, big_rows = big_release(all_sites, "inspection/camera", "1.4.2")
    store_release(store, release, big_rows)
    store_release(store, *synced_release("inspection/camera", NOW - timedelta(days=1), "1.4.1", all_sites))
    setup.release_id = release.release_id
    # inspection/lidar: the same, but its last site joined after N-1 (no row there), so the gate's
    # rollback search walks every older release of the repository looking for that site's N-1.
    lidar, lidar_rows = big_release(all_sites, "inspection/lidar", "2.0.2")
    store_release(store, lidar, lidar_rows)
    store_release(store, *synced_release("inspection/lidar", NOW - timedelta(days=1), "2.0.1", all_sites[:-1]))
    for k in range(1, args.history):
        store_release(store, *synced_release("inspection/lidar", NOW - timedelta(days=1 + k), f"1.{k}.0", ()))
    setup.lidar_id = lidar.release_id
    # A small release too (3 rows), for the per-request cost that does not grow with rows.
    small, small_rows, _ = synced_release("inspection/small", NOW - timedelta(hours=1), "0.1.0", all_sites[:3])
    store_release(store, small, small_rows)
    setup.small_release_id = small.release_id
    setup.big_s = time.perf_counter() - started
    timed(lambda: store.list_site_syncs(release.release_id), 3)
    setup.raw_before_ms = statistics.median(timed(lambda: store.list_site_syncs(release.release_id), 9)) * 1000

    def write(index: int) -> None:
        other, other_rows = other_release(index, all_sites, rows)
        store_release(store, other, other_rows)

    cpu, azurite = time.process_time(), process_cpu(azurite_pid) if azurite_pid else 0.0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, range(releases)))
    setup.others_s = time.perf_counter() - started
    setup.others_cpu = time.process_time() - cpu
    setup.others_azurite_cpu = (process_cpu(azurite_pid) - azurite) if azurite_pid else 0.0
    return setup


def timed(call: Callable[[], Any], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append(time.perf_counter() - started)
    return spent


# -- the load generator (a separate process: the clients must not share the server's GIL) ---------


def client_process(conn: Connection) -> None:
    """Serve load commands from the parent: (base_url, path, headers, clients, per_client, max_s, expect)."""
    while True:
        command = conn.recv()
        if command is None:
            return
        conn.send(run_clients(conn, *command))


def run_clients(
    conn: Connection,
    base_url: str,
    path: str,
    headers: dict[str, str],
    clients: int,
    per_client: int,
    max_seconds: float,
    expect: int,
) -> dict[str, Any]:
    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    sizes: list[int] = [0] * clients
    failures: list[str] = []
    state = {"deadline": 0.0}

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=120.0) as http:
            http.get("/api/healthz").raise_for_status()  # open the keep-alive connection first
            barrier.wait()
            for _ in range(per_client):
                started = time.perf_counter()
                try:
                    response = http.get(path, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    return
                latencies[index].append(time.perf_counter() - started)
                sizes[index] = len(response.content)
                if response.status_code != expect:
                    failures.append(f"{path}: HTTP {response.status_code}, expected {expect}")
                    return
                if time.perf_counter() > state["deadline"]:
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    conn.send("ready")  # every client is about to wait at the barrier; the parent snapshots CPU now
    conn.recv()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    state["deadline"] = time.perf_counter() + max_seconds
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "latencies": [x for per in latencies for x in per],
        "wall": wall,
        "cpu": (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime),
        "bytes": max(sizes),
        "failures": failures,
    }


class PoolFull(logging.Handler):
    """Counts urllib3's "Connection pool is full, discarding connection" warnings: the Azure SDK's
    requests session keeps 10 connections, so an 11th concurrent call opens (and then drops) one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Connection pool is full"):
            self.count += 1


POOL_FULL = PoolFull()


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Measured:
    label: str
    code: int
    latencies: list[float]
    wall: float
    planned: int
    server_cpu: float = 0.0  # seconds, this process (the uvicorn server, or the raw store calls)
    client_cpu: float = 0.0  # seconds, the client process
    azurite_cpu: float = 0.0  # seconds
    size: int = 0
    serial_p50: float = 0.0
    other_cpu: float = 0.0  # seconds other processes of the machine used during the concurrent run
    window: float = 0.0  # wall seconds between the CPU snapshots around the concurrent run
    pool_full: int = 0  # urllib3 "Connection pool is full, discarding connection" during the concurrent run

    @property
    def count(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.wall

    def cpu_per_req(self, seconds: float) -> float:
        return seconds / self.count * 1000

    @property
    def others_share(self) -> float:
        """Share of the machine (every core) other processes used during the concurrent run."""
        return max(0.0, self.other_cpu) / (max(self.window, self.wall) * (os.cpu_count() or 1))

    @property
    def server_cpu_per_req(self) -> float:
        return self.cpu_per_req(self.server_cpu)


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used since boot (every core)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class Cpu:
    server: float
    azurite: float
    machine: float
    at: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.server - other.server, self.azurite - other.azurite, self.machine - other.machine, self.at - other.at
        )


class Load:
    """Drives the client process against one server, snapshotting CPU around each run."""

    def __init__(self, conn: Connection, azurite_pid: int | None, clients: int, per_client: int, max_s: float):
        self.conn, self.azurite_pid = conn, azurite_pid
        self.clients, self.per_client, self.max_s = clients, per_client, max_s

    def _cpu(self) -> Cpu:
        azurite = process_cpu(self.azurite_pid) if self.azurite_pid else 0.0
        return Cpu(time.process_time(), azurite, machine_busy(), time.perf_counter())

    def http(self, base: str, label: str, path: str, expect: int, headers: dict[str, str] | None = None) -> Measured:
        serial = self._run(base, path, headers or {}, 1, min(self.per_client, 50), expect)
        pool_full = POOL_FULL.count
        result, cpu = self._run(base, path, headers or {}, self.clients, self.per_client, expect)
        measured = Measured(
            label,
            expect,
            result["latencies"],
            result["wall"],
            self.clients * self.per_client,
            cpu.server,
            result["cpu"],
            cpu.azurite,
            result["bytes"],
        )
        measured.other_cpu = cpu.machine - cpu.server - cpu.azurite - result["cpu"]
        measured.window = cpu.at
        measured.serial_p50 = statistics.median(serial[0]["latencies"])
        measured.pool_full = POOL_FULL.count - pool_full
        return measured

    def _run(
        self, base: str, path: str, headers: dict[str, str], clients: int, per_client: int, expect: int
    ) -> tuple[dict[str, Any], Cpu]:
        self.conn.send((base, path, headers, clients, per_client, self.max_s, expect))
        assert self.conn.recv() == "ready"
        before = self._cpu()
        self.conn.send("go")
        result = self.conn.recv()
        spent = self._cpu() - before
        if result["failures"]:
            raise AssertionError(result["failures"][0])
        return result, spent

    def raw(self, label: str, call: Callable[[], Any]) -> Measured:
        """The same concurrency and call count, in this process, without HTTP."""
        serial = timed(call, min(self.per_client, 50))
        latencies: list[list[float]] = [[] for _ in range(self.clients)]
        barrier = threading.Barrier(self.clients + 1)
        deadline = {"at": 0.0}

        def worker(index: int) -> None:
            barrier.wait()
            for _ in range(self.per_client):
                started = time.perf_counter()
                call()
                latencies[index].append(time.perf_counter() - started)
                if time.perf_counter() > deadline["at"]:
                    return

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(self.clients)]
        for thread in threads:
            thread.start()
        before = self._cpu()
        pool_full = POOL_FULL.count
        deadline["at"] = time.perf_counter() + self.max_s
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        cpu = self._cpu() - before
        flat = [x for per in latencies for x in per]
        measured = Measured(label, 0, flat, wall, self.clients * self.per_client, cpu.server, 0.0, cpu.azurite)
        measured.other_cpu = cpu.machine - cpu.server - cpu.azurite
        measured.window = cpu.at
        measured.serial_p50 = statistics.median(serial)
        measured.pool_full = POOL_FULL.count - pool_full
        return measured


# -- the server ----------------------------------------------------------------------------------


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        config = uvicorn.Config(asgi_app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="bench-uvicorn")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# -- where the time goes -------------------------------------------------------------------------


async def _inline(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def asgi_request(path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request through the whole ASGI app in this thread (no socket, no uvicorn), with FastAPI's
    threadpool hops run inline so cProfile sees the handler and its dependencies too."""
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with (
        mock.patch("fastapi.routing.run_in_threadpool", _inline),
        mock.patch("fastapi.dependencies.utils.run_in_threadpool", _inline),
    ):
        asyncio.run(asgi_app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@dataclass
class Breakdown:
    backend: str
    stages: list[tuple[str, float, str]] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)
    profile_total: float = 0.0


HTTP = HttpCounter()


def breakdown(backend: str, services: Services, setup: Setup, queries: dict[str, Callable[[str], Any]]) -> Breakdown:
    store = services.store
    release_id, lidar = setup.release_id, setup.lidar_id
    counting = Counting(store)
    counted = bootstrap(bench_settings(), store=counting, clock=FixedClock())

    def med(call: Callable[[], Any], times: int = 15) -> float:
        call()
        return statistics.median(timed(call, times)) * 1000

    def calls(call: Callable[[Services], Any]) -> str:
        """Store calls (and HTTP requests to Table Storage) one call makes, with a warm catalog."""
        counted.catalog.sites()
        counting.reset()
        http = HTTP.total
        call(counted)
        made = ", ".join(f"{name} {n}" for name, n in sorted(counting.calls.items()))
        return made + (f"; {HTTP.total - http} HTTP requests" if backend == "azurite" else "")

    def gate(services: Services, rid: str, *, with_rollback: bool = False) -> Any:
        return status.readiness(services, rid, GateSelection(), GatePolicy(), include_rollback=with_rollback)

    body = status.release_detail(services, release_id)
    etag = f'"{status.release_detail_tag(services, release_id)}"'
    gate_body = gate(services, release_id, with_rollback=True).view
    rollback_bytes = len(json.dumps(gate_body["rollback"]))
    result = Breakdown(backend)
    result.stages = [
        ("store.get_release (header point read)", med(lambda: store.get_release(release_id)), ""),
        *((name, med(lambda q=query: q(release_id)), "") for name, query in queries.items()),
        ("store.list_site_syncs (query + decode)", med(lambda: store.list_site_syncs(release_id)), ""),
        ("catalog.sites() (cached) + name dict", med(lambda: {s.name: s for s in services.catalog.sites()}), ""),
        (
            "status.release_detail (all of the above + views)",
            med(lambda: status.release_detail(services, release_id)),
            calls(lambda s: status.release_detail(s, release_id)),
        ),
        (
            "status.release_detail_tag (versions + catalog)",
            med(lambda: status.release_detail_tag(services, release_id)),
            calls(lambda s: status.release_detail_tag(s, release_id)),
        ),
        ("json_bytes(body): the one serialization", med(lambda: json_bytes(body)), ""),
        ("handler get_release() total (200)", med(lambda: routes.get_release(release_id, None)), ""),
        ("handler get_release() with If-None-Match (304)", med(lambda: routes.get_release(release_id, etag)), ""),
        ("ASGI in-process, threadpool inlined (200)", med(lambda: asgi_request(f"/api/releases/{release_id}")), ""),
        ("ASGI in-process healthz", med(lambda: asgi_request("/api/healthz")), ""),
        (
            "status.readiness, camera (default: no rollback section)",
            med(lambda: gate(services, release_id)),
            calls(lambda s: gate(s, release_id)),
        ),
        (
            "status.readiness, camera, rollback=true (N-1 at every site)",
            med(lambda: gate(services, release_id, with_rollback=True)),
            calls(lambda s: gate(s, release_id, with_rollback=True)),
        ),
        (
            "ASGI in-process readiness, camera (202)",
            med(lambda: asgi_request(f"/api/releases/{release_id}/readiness")),
            f"with rollback=true, 'rollback' is {rollback_bytes} of the body's {len(json.dumps(gate_body))} bytes",
        ),
        (
            f"status.readiness, lidar (1 site without N-1, {setup.history} older)",
            med(lambda: gate(services, lidar, with_rollback=True), 5),
            calls(lambda s: gate(s, lidar, with_rollback=True)),
        ),
    ]
    code, _ = asgi_request(f"/api/releases/{release_id}")
    assert code == 200, code
    assert routes.get_release(release_id, etag).status_code == 304
    gc.collect()  # a collection now rather than inside the five profiled requests (they still pay their own)
    profiler = cProfile.Profile()
    profiled = 5
    profiler.enable()
    for _ in range(profiled):
        asgi_request(f"/api/releases/{release_id}")
    profiler.disable()
    stats = pstats.Stats(profiler)
    result.profile_total = stats.total_tt * 1000 / profiled  # type: ignore[attr-defined]
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    root = str(Path(__file__).resolve().parents[1]) + "/"
    for (filename, line, name), (_, calls, tottime, cumtime, _) in entries[:14]:
        short = filename.replace(root, "").split("site-packages/")[-1].split("lib/python3.11/")[-1]
        where = f"{short}:{line}({name})" if line else name
        result.profile.append(
            f"{tottime * 1000 / profiled:8.2f} {cumtime * 1000 / profiled:8.2f} {calls // profiled:>7}  {where[:90]}"
        )
    return result


# -- one backend ---------------------------------------------------------------------------------


@dataclass
class BackendRun:
    backend: str
    setup: Setup
    measured: list[Measured]
    breakdown: Breakdown


def etag_of(base: str, path: str) -> str:
    with httpx.Client(base_url=base) as http:
        response = http.get(path)
        assert response.status_code in {200, 202}, response.status_code
        return response.headers["etag"]


def measure_backend(
    backend: str, store: Any, load: Load, args: argparse.Namespace, queries: dict[str, Callable[[str], Any]]
) -> BackendRun:
    threads = args.setup_threads if backend == "azurite" else 1
    setup = store_everything(store, args.sites, args, threads, load.azurite_pid)
    services = bootstrap(bench_settings(), store=store, clock=FixedClock())
    use_services(services)
    rid, small = setup.release_id, setup.small_release_id
    release_path, gate_path = f"/api/releases/{rid}", f"/api/releases/{rid}/readiness"
    measured: list[Measured] = []
    with Server() as server:
        base = server.base
        release_etag, gate_etag = etag_of(base, release_path), etag_of(base, gate_path)
        measured.append(load.http(base, "GET /api/healthz", "/api/healthz", 200))
        measured.append(load.http(base, "GET release (3 sites)", f"/api/releases/{small}", 200))
        measured.append(load.http(base, "GET release (M sites)", release_path, 200))
        measured.append(
            load.http(base, "GET release (M sites) If-None-Match", release_path, 304, {"If-None-Match": release_etag})
        )
        measured.append(load.http(base, "GET readiness (M sites)", gate_path, 202))
        measured.append(
            load.http(base, "GET readiness (M sites) If-None-Match", gate_path, 304, {"If-None-Match": gate_etag})
        )
        measured.append(load.raw("store.list_site_syncs (M rows)", lambda: store.list_site_syncs(rid)))
    found = breakdown(backend, services, setup, queries)
    use_services(None)
    return BackendRun(backend, setup, measured, found)


def sqlite_queries(path: Path) -> dict[str, Callable[[str], Any]]:
    local = threading.local()

    def query(release_id: str) -> Any:
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = sqlite3.connect(path, isolation_level=None)
        return db.execute(
            "SELECT doc, version FROM site_syncs WHERE release_id = ? ORDER BY site", (release_id,)
        ).fetchall()

    return {"sqlite3 SELECT doc, version (no decode)": query}


def tables_queries(conn: str, table: str) -> dict[str, Callable[[str], Any]]:
    client = TableServiceClient.from_connection_string(conn).get_table_client(table)

    def query(release_id: str, select: list[str] | None = None) -> Any:
        return list(
            client.query_entities(
                "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                parameters={"pk": release_id, "low": "s|", "high": "s}"},
                select=select,
            )
        )

    return {
        "SDK query_entities, all properties (no decode)": query,
        "SDK query_entities, select=['doc'] (no decode)": lambda release_id: query(release_id, ["doc"]),
    }


# -- report --------------------------------------------------------------------------------------


def report(runs: list[BackendRun], args: argparse.Namespace, began: float) -> None:
    m = args.sites
    print(
        f"status API, M={m} sites. inspection/camera: the release under test (a row at each site; gate pending:\n"
        f"202) and its N-1 (SYNCED at all {m} sites, one evidence record each). inspection/lidar: the same, but\n"
        f"N-1 at {m - 1} sites and {max(args.history - 1, 0)} older releases without rows (the rollback worst "
        f"case). One 3-site release. N={args.releases}\nother published releases (50 repositories) with "
        f"{args.rows_per_release} rows each."
    )
    print(
        f"{args.clients} clients (httpx.Client each, own thread, separate process) x {args.requests} requests, "
        f"at most {args.max_seconds:.0f} s per run; uvicorn {uvicorn.__version__} "
        f"({'httptools' if _has('httptools') else 'h11'}, {'uvloop' if _has('uvloop') else 'asyncio'}) "
        f"on loopback, {os.cpu_count()} CPUs"
    )
    for run in runs:
        s = run.setup
        per_s = s.others / s.others_s if s.others_s else 0.0
        print(
            f"setup {run.backend}: {args.sites} sites {s.sites_s:.1f} s | camera, lidar, small {s.big_s:.1f} s | "
            f"{s.others} releases x (create + {s.rows_per_other} rows + publish) {s.others_s:.1f} s "
            f"({per_s:.0f}/s, {s.threads} thread{'s' if s.threads > 1 else ''}; CPU: this process "
            f"{s.others_cpu:.1f} s, Azurite {s.others_azurite_cpu:.1f} s) | list_site_syncs(M rows) 1-thread p50 "
            f"before those: {s.raw_before_ms:.1f} ms"
        )
    print()
    cl = f"({args.clients} cl)"
    print(
        f"{'':8} {'':38} {'':>4} {'':>5} {'':>7} {'1 client':>8} {'p50':>7} {'p99':>7} {'req/s':>7} "
        f"{'server':>7} {'client':>7} {'Azurite':>7} {'others':>6} | {'vs healthz':^13} | {'vs raw store call':^20}"
    )
    print(
        f"{'backend':8} {'request':38} {'code':>4} {'n':>5} {'bytes':>7} {'p50 ms':>8} {cl:>7} {cl:>7} {cl:>7} "
        f"{'CPU ms':>7} {'CPU ms':>7} {'CPU ms':>7} {'CPU %':>6} | {'req/s':>6} {'CPU':>6} | {'req/s':>6} {'CPU':>6} "
        f"{'p50':>6}"
    )
    for run in runs:
        health = next(m for m in run.measured if m.label == "GET /api/healthz")
        raw = next(m for m in run.measured if m.label.startswith("store."))
        for m in run.measured:
            code = str(m.code) if m.code else "-"
            print(
                f"{run.backend:8} {m.label[:38]:38} {code:>4} {m.count:>5} {m.size if m.code else 0:>7} "
                f"{m.serial_p50 * 1000:8.2f} {m.p50 * 1000:7.1f} {m.pct(0.99) * 1000:7.1f} {m.rps:7.1f} "
                f"{m.cpu_per_req(m.server_cpu):7.2f} {m.cpu_per_req(m.client_cpu):7.2f} "
                f"{m.cpu_per_req(m.azurite_cpu):7.2f} {m.others_share:6.0%} | {health.rps / m.rps:5.1f}x "
                f"{m.server_cpu_per_req / health.server_cpu_per_req:5.1f}x | {raw.rps / m.rps:5.1f}x "
                f"{m.server_cpu_per_req / raw.server_cpu_per_req:5.1f}x {m.p50 / raw.p50:5.1f}x"
                + (f"  (cut at {args.max_seconds:.0f} s: {m.count} of {m.planned})" if m.count < m.planned else "")
            )
    print()
    print(
        "Azurite answers every query by scanning the whole table (LokiJS, interpreted filter) and runs on the\n"
        "same 2 cores; Table Storage reads a partition's key range. Compare backends by server CPU, not latency.\n"
    )
    print(
        "CPU ms = CPU time per request of the server process (uvicorn + app + store client), the client\n"
        "process and Azurite during the concurrent run; others = CPU that other processes of the machine\n"
        "took meanwhile, as a share of all cores (well above 0 % means the run was disturbed).\n"
        "vs healthz: healthz req/s / this req/s, and this server CPU / healthz server CPU (same server,\n"
        "same run). vs raw: the same for store.list_site_syncs(id) called\n"
        f"directly on {args.clients} threads of this process (no HTTP), plus this p50 / its p50."
    )
    for run in runs:
        if any(m.pool_full for m in run.measured):
            counts = ", ".join(f"{m.label} {m.pool_full}" for m in run.measured if m.pool_full)
            print(f"{run.backend}: urllib3 'Connection pool is full, discarding connection' (pool of 10): {counts}")
    for run in runs:
        health = next(m for m in run.measured if m.label == "GET /api/healthz")
        if health.client_cpu > health.server_cpu:
            print(
                f"{run.backend}: healthz req/s is bounded by the client process "
                f"({health.cpu_per_req(health.client_cpu):.2f} ms client CPU vs "
                f"{health.server_cpu_per_req:.2f} ms server CPU per request); its CPU ratio is the fairer one."
            )
    print("Revalidation (If-None-Match 304) against the full answer, same run:")
    for run in runs:
        by = {m.label: m for m in run.measured}
        for name in ("release", "readiness"):
            full = by[f"GET {name} (M sites)"]
            cond = by[f"GET {name} (M sites) If-None-Match"]
            ms = 1000
            cpu_cond, cpu_full = cond.server_cpu / cond.count * ms, full.server_cpu / full.count * ms
            print(
                f"  {run.backend:8} {name:9}: 304 vs {full.code}: p50 {cond.p50 * ms:.1f} vs {full.p50 * ms:.1f} ms "
                f"({cond.p50 / full.p50:.2f}x); 1-client p50 {cond.serial_p50 * ms:.2f} vs "
                f"{full.serial_p50 * ms:.2f} ms ({cond.serial_p50 / full.serial_p50:.2f}x); "
                f"req/s {cond.rps:.1f} vs {full.rps:.1f}; server CPU {cpu_cond:.2f} vs {cpu_full:.2f} ms/req; "
                f"{cond.size} vs {full.size} bytes"
            )
    print(
        "\nTargets for a 1,000-site release: server CPU per request (the work done), then in brackets the"
        " 1-client and the loaded p50 (which add the transfer of the body and queueing on this machine's cores):"
    )
    for run in runs:
        by = {m.label: m for m in run.measured}
        raw = by["store.list_site_syncs (M rows)"]
        release, gate = by["GET release (M sites)"], by["GET readiness (M sites)"]
        checks = [
            ("release read vs raw store read", release, raw, 1.5),
            ("gate vs raw store read", gate, raw, 1.5),
            ("release 304 vs its full answer", by["GET release (M sites) If-None-Match"], release, 0.1),
            ("gate 304 vs its full answer", by["GET readiness (M sites) If-None-Match"], gate, 0.1),
        ]
        for name, this, against, target in checks:
            ratio = this.server_cpu_per_req / against.server_cpu_per_req
            verdict = "met" if ratio <= target else "MISSED"
            print(
                f"  {run.backend:8} {name:32} {ratio:5.2f}x  [{this.serial_p50 / against.serial_p50:5.2f}x "
                f"{this.p50 / against.p50:5.2f}x]  target <= {target}x: {verdict}"
            )
    for run in runs:
        found = run.breakdown
        print(
            f"\nwhere the time goes, {found.backend}: one call, one thread, median of 15 (5 for lidar), ms "
            "[store calls; HTTP requests]"
        )
        for name, ms, note in found.stages:
            print(f"  {name:58} {ms:8.2f}" + (f"  [{note}]" if note else ""))
        print(
            f"  cProfile of GET /api/releases/{{id}} through the ASGI app, per request (mean of 5; "
            f"{found.profile_total:.1f} ms under the profiler):"
        )
        print(f"  {'tottime':>8} {'cumtime':>8} {'calls':>7}  function")
        for line in found.profile:
            print("  " + line)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10000, help="other published releases (default 10,000)")
    parser.add_argument("--sites", type=int, default=1000, help="sites = rows of the big release (default 1,000)")
    parser.add_argument("--requests", type=int, default=25, help="requests per client per run (default 25)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--rows-per-release", type=int, default=0, help="rows of each other release (default 0)")
    parser.add_argument(
        "--history", type=int, default=100, help="older releases of the rollback worst-case repository (default 100)"
    )
    parser.add_argument("--setup-threads", type=int, default=8, help="writer threads for Azurite setup (default 8)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="bound on each measured run (default 30)")
    parser.add_argument("--backends", nargs="*", default=["sqlite", "azurite"], choices=["sqlite", "azurite"])
    args = parser.parse_args()
    logging.getLogger("urllib3.connectionpool").addHandler(POOL_FULL)
    began = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    clients = context.Process(target=client_process, args=(child_end,), daemon=True, name="bench-clients")
    clients.start()
    runs: list[BackendRun] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        azurite = start_azurite(workdir / "azurite") if "azurite" in args.backends else None
        try:
            if "sqlite" in args.backends:
                db = workdir / "acrsync.db"
                store = SqliteStateStore(db)
                load = Load(parent_end, None, args.clients, args.requests, args.max_seconds)
                runs.append(measure_backend("sqlite", store, load, args, sqlite_queries(db)))
                store.close()
            if azurite is not None:
                prefix = "a" + secrets.token_hex(4)
                tables = AzureTableStore.from_connection_string(
                    azurite.connection_string, table_prefix=prefix, raw_request_hook=HTTP
                )
                tables.ensure_tables()
                load = Load(parent_end, azurite.process.pid, args.clients, args.requests, args.max_seconds)
                queries = tables_queries(azurite.connection_string, tables.table_names["releases"])
                runs.append(measure_backend("azurite", tables, load, args, queries))
                tables.close()
        finally:
            parent_end.send(None)
            clients.join(10)
            if azurite is not None:
                azurite.stop()
    report(runs, args, began)


if __name__ == "__main__":
    main()
