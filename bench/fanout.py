"""Fan-out benchmark: one push to N sites, on SQLite and on Table Storage (Azurite).

Prints, per backend and N: store operations and queue sends against the floor
(1 release write + ceil(N/100) row transactions + ceil(total message bytes / batch limit) sends),
and wall time next to a raw baseline doing the same minimal writes in the same run.

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
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.data.tables import TableServiceClient

from bench._common import NOW, Counting, FixedClock, bench_settings, push_event, sites
from shared.adapters import codec
from shared.adapters.azure_tables import AzureTableStore
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap
from shared.domain.acr_events import decode_event
from shared.services.fanout import plan_fanout
from shared.services.ingest import _candidate, ingest_event
from tests.support.azurite import start_azurite
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

    def report(self) -> str:
        floor_sends = math.ceil(self.message_bytes / STANDARD_BATCH)
        floor = 1 + math.ceil(self.sites / 100) + floor_sends
        ops = self.store_ops + self.sends
        return (
            f"{self.backend:8} N={self.sites:>6}: store ops {self.store_ops:>4} + sends {self.sends:>3} = {ops:>4} "
            f"vs floor {floor:>4} -> {ops / floor:.3f}x | store {self.store_seconds * 1000:7.1f} ms vs raw "
            f"{self.baseline_seconds * 1000:7.1f} ms -> {self.store_seconds / self.baseline_seconds:.2f}x "
            f"| whole fan-out {self.seconds * 1000:7.1f} ms"
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
    message_bytes = sum(batch.size_in_bytes for batch in sender.batches)
    return counting.transactions, len(sender.batches), message_bytes, elapsed, counting.seconds


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
                sqlite_store.upsert_sites(sites(count))
                measured = fan_out_once(sqlite_store, count)
                runs.append(Run("sqlite", count, *measured, raw_sqlite(workdir / f"raw-{count}.db", count)))
                sqlite_store.close()

                tables = AzureTableStore.from_connection_string(
                    azurite.connection_string, table_prefix="b" + secrets.token_hex(4)
                )
                tables.ensure_tables()
                tables.upsert_sites(sites(count))
                measured = fan_out_once(tables, count)
                runs.append(Run("azurite", count, *measured, raw_tables(azurite.connection_string, count)))
                tables.close()
        finally:
            azurite.stop()
    print("fan-out of one push (targets: ops ratio <= 1.1x, store wall time vs raw writes <= 1.3x);")
    print("'whole fan-out' adds planning and the Service Bus SDK's AMQP encoding of every message")
    for run in runs:
        print(run.report())


if __name__ == "__main__":
    main()
