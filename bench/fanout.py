"""Fan-out benchmark: one push to N sites, on SQLite and on Table Storage (Azurite).

Prints, per backend and N: store operations and queue sends against the floor
(1 release write + ceil(N/99) row transactions + ceil(total message bytes / batch limit) sends),
and wall time next to a raw baseline doing the same minimal writes in the same run.

Then what weighing a release adds per push, off the fan-out's path (its first summary): the manifest
reads against a real OCI registry on loopback (one for an image, one more per platform of an index,
counted on the wire) and planning every row's transfer (conditional batches of rows), each as a
ratio to the fan-out of the same run. A loopback registry answers in about a millisecond; ACR across a
WAN in tens, so the reads are counted as well as timed.

    .venv/bin/python bench/fanout.py            # N = 1,000 and 10,000
    .venv/bin/python bench/fanout.py --sites 1000

Queue sends go through the real Service Bus adapter into the SDK's real ServiceBusMessageBatch
(Standard tier, 256 KiB) with a recording sender: there is no Service Bus to send to here.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sqlite3
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.data.tables import TableServiceClient

from bench._common import NOW, Counting, FixedClock, bench_settings, push_event, sites
from shared.adapters import codec
from shared.adapters.azure_tables import AzureTableStore
from shared.adapters.parent_registry import ParentRegistryContentReader
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap
from shared.domain.acr_events import decode_event
from shared.domain.content import synthetic_content
from shared.ports import ROWS_PER_TRANSACTION
from shared.services.fanout import plan_fanout
from shared.services.ingest import _candidate, ingest_event
from shared.services.transfers import plan_transfers
from tests.support.azurite import start_azurite
from tests.support.registry import push_index, push_layers, self_signed_certificate, start_registry
from tests.support.servicebus import STANDARD_BATCH_BYTES as STANDARD_BATCH
from tests.support.servicebus import RecordingServiceBus


@dataclass
class Run:
    backend: str
    sites: int
    store_ops: int
    sends: int
    message_bytes: int
    seconds: float
    store_seconds: float
    baseline_seconds: float
    plan_ops: int = 0
    plan_seconds: float = 0.0

    def report(self) -> str:
        floor_sends = math.ceil(self.message_bytes / STANDARD_BATCH)
        floor = 1 + math.ceil(self.sites / ROWS_PER_TRANSACTION) + floor_sends
        ops = self.store_ops + self.sends
        return (
            f"{self.backend:8} N={self.sites:>6}: store ops {self.store_ops:>4} + sends {self.sends:>3} = {ops:>4} "
            f"vs floor {floor:>4} -> {ops / floor:.3f}x | store {self.store_seconds * 1000:7.1f} ms vs raw "
            f"{self.baseline_seconds * 1000:7.1f} ms -> {self.store_seconds / self.baseline_seconds:.2f}x "
            f"| whole fan-out {self.seconds * 1000:7.1f} ms"
        )

    def transfers(self) -> str:
        return (
            f"{self.backend:8} N={self.sites:>6}: planning transfers: {self.plan_ops:>5} store ops in "
            f"{self.plan_seconds * 1000:8.1f} ms -> {self.plan_seconds / self.seconds:.2f}x the whole fan-out"
        )


@dataclass
class Weighing:
    kind: str
    reads: int
    seconds: float

    def report(self, fan_out: Run) -> str:
        return (
            f"weighing {self.kind:24}: {self.reads} manifest read{'s' if self.reads > 1 else ''} "
            f"{self.seconds * 1000:6.2f} ms -> {self.seconds / fan_out.seconds:.4f}x the whole fan-out of "
            f"{fan_out.sites:,} sites ({fan_out.backend})"
        )


def fan_out_once(store: Any, count: int) -> tuple[int, int, int, float, float]:
    counting = Counting(store)
    bus = RecordingServiceBus()
    sender = bus.sender
    queue = bus.queue()
    services = bootstrap(bench_settings(), store=counting, queue=queue, clock=FixedClock())
    services.catalog.sites()  # a warm process: the catalog is read once per TTL, not per push
    counting.reset()
    event = push_event()
    started = time.perf_counter()
    result = ingest_event(services, event)
    elapsed = time.perf_counter() - started
    assert result.jobs_sent == count, result
    assert result.release_id is not None
    message_bytes = sum(batch.size_in_bytes for batch in sender.batches)
    fanned = (counting.transactions, len(sender.batches), message_bytes, elapsed, counting.seconds)
    # What the release's first summary adds once it is weighed: every row's transfer.
    header = store.get_release(result.release_id).value
    weighed = replace(header, content=synthetic_content(header.digest))
    rows = store.list_site_syncs(result.release_id)
    counting.reset()
    started = time.perf_counter()
    planned = plan_transfers(services, weighed, rows, NOW)
    plan_seconds = time.perf_counter() - started
    assert planned == count, planned
    return (*fanned, counting.transactions, plan_seconds)


def weigh(registry_url: str, cert: str, rounds: int = 30) -> list[Weighing]:
    """Median time of reading an image's and a two-platform index's weight, and the manifest reads
    each took on the wire."""
    trust = ssl.create_default_context(cafile=cert)
    base = [secrets.token_bytes(2_000), secrets.token_bytes(1_000)]
    image = push_layers(registry_url, "inspection/camera", "1.4.2", [*base, secrets.token_bytes(500)], verify=trust)
    arm = push_layers(
        registry_url,
        "inspection/camera",
        "arm64",
        [*base, secrets.token_bytes(500)],
        architecture="arm64",
        verify=trust,
    )
    index = push_index(
        registry_url, "inspection/camera", "1.5.0", [image, arm], platforms=["amd64", "arm64"], verify=trust
    )
    manifest_reads = 0

    def count(response: Any) -> None:
        nonlocal manifest_reads
        manifest_reads += "/manifests/" in response.http_request.url

    reader = ParentRegistryContentReader(registry_url, None, connection_verify=cert, raw_response_hook=count)
    measured = []
    try:
        for kind, digest in (("an image", image.digest), ("an index of 2 platforms", index.digest)):
            reader.read_content("inspection/camera", digest)  # a warm connection, as in a running process
            manifest_reads, times = 0, []
            for _ in range(rounds):
                started = time.perf_counter()
                reader.read_content("inspection/camera", digest)
                times.append(time.perf_counter() - started)
            measured.append(Weighing(kind, manifest_reads // rounds, statistics.median(times)))
    finally:
        reader.close()
    return measured


def raw_documents(count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    event = decode_event(push_event())
    release = _candidate(event)  # type: ignore[arg-type]
    plan = plan_fanout(release, sites(count), NOW)
    header = codec.release_to_doc(release)
    return header, [codec.site_sync_to_doc(row) for row in plan.rows]


def raw_tables(conn: str, count: int) -> float:
    header, rows = raw_documents(count)
    service = TableServiceClient.from_connection_string(conn)
    prefix = "raw" + secrets.token_hex(4)
    releases = service.create_table(prefix + "releases")
    index = service.create_table(prefix + "index")
    pk = secrets.token_hex(16)
    started = time.perf_counter()
    releases.create_entity({"PartitionKey": pk, "RowKey": "release", "doc": json.dumps(header)})
    for start in range(0, len(rows), 100):
        chunk = rows[start : start + 100]
        releases.submit_transaction(
            [("create", {"PartitionKey": pk, "RowKey": "s|" + r["site"], "doc": json.dumps(r)}) for r in chunk]
        )
    index.upsert_entity({"PartitionKey": "all", "RowKey": pk, "doc": json.dumps(header)})
    return time.perf_counter() - started


def raw_sqlite(path: Path, count: int) -> float:
    header, rows = raw_documents(count)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE r (id TEXT PRIMARY KEY, doc TEXT)")
    db.execute("CREATE TABLE s (id TEXT, site TEXT, doc TEXT, PRIMARY KEY (id, site))")
    pk = secrets.token_hex(16)
    started = time.perf_counter()
    db.execute("INSERT INTO r VALUES (?, ?)", (pk, json.dumps(header)))
    for start in range(0, len(rows), 100):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT OR IGNORE INTO s VALUES (?, ?, ?)",
            [(pk, r["site"], json.dumps(r)) for r in rows[start : start + 100]],
        )
        db.execute("COMMIT")
    db.execute("UPDATE r SET doc = ? WHERE id = ?", (json.dumps(header), pk))
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="*", default=[1000, 10000])
    args = parser.parse_args()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        azurite = start_azurite(workdir / "azurite")
        try:
            for count in args.sites:
                sqlite_store = SqliteStateStore(workdir / f"fanout-{count}.db")
                sqlite_store.upsert_sites(sites(count, windowed_every=2))
                measured = fan_out_once(sqlite_store, count)
                runs.append(
                    Run("sqlite", count, *measured[:5], raw_sqlite(workdir / f"raw-{count}.db", count), *measured[5:])
                )
                sqlite_store.close()

                tables = AzureTableStore.from_connection_string(
                    azurite.connection_string, table_prefix="b" + secrets.token_hex(4)
                )
                tables.ensure_tables()
                tables.upsert_sites(sites(count, windowed_every=2))
                measured = fan_out_once(tables, count)
                runs.append(
                    Run("azurite", count, *measured[:5], raw_tables(azurite.connection_string, count), *measured[5:])
                )
                tables.close()
        finally:
            azurite.stop()
        cert, key, _ = self_signed_certificate(workdir, days=1)
        with start_registry(workdir / "registry", tls=(cert, key)) as registry:
            weighings = weigh(registry.url, str(cert))
    print("fan-out of one push (targets: ops ratio <= 1.1x, store wall time vs raw writes <= 1.3x);")
    print("'whole fan-out' adds planning and the Service Bus SDK's AMQP encoding of every message")
    for run in runs:
        print(run.report())
    print("what weighing adds per push, in the release's first summary (not on the fan-out's path):")
    baseline = next((run for run in runs if run.backend == "sqlite" and run.sites == 1000), runs[0])
    for weighing in weighings:
        print(weighing.report(baseline))
    for run in runs:
        print(run.transfers())


if __name__ == "__main__":
    main()
