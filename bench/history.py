"""History benchmark: does a sweep, and a report, cost what is due or what has happened?

One store with S sites and R releases, of which F are still in flight (pushed within the hour, rows
waiting for a window, checks scheduled) and the rest history (every row synced) pushed over the same
last days whatever R is (one a day for the smaller R). The sweep and the 30-day report run on it
for R = 10 and R = 100 with the same F, on the SQLite store; the last line compares the two sizes.
(The report's cost follows sites × days with pushes in its period, so the history is kept to the
same days.)

    .venv/bin/python bench/history.py                       # S = 10,000, R = 10 and 100, F = 5
    .venv/bin/python bench/history.py --sites 2000 --releases 5 50 --in-flight 5

Setup writes the rows through the store port (not timed). Each measured call runs three times and
the fastest is reported, then once more for the peak memory it allocated (tracemalloc); and the
rows it read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import NOW, REGISTRY, FixedClock, bench_settings, sites
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap
from shared.domain.model import Release, SiteSync
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.services.report import site_report
from shared.services.rows import earliest_due
from shared.services.sweeper import sweep
from tests.fakes import RecordingStore


def release(index: int, pushed_hours_ago: float) -> Release:
    return Release(
        registry=REGISTRY,
        repository="inspection/camera",
        digest="sha256:" + f"{index:064x}",
        pushed_at=NOW - timedelta(hours=pushed_hours_ago),
        tags=frozenset({f"1.{index}.0"}),
        indexed=True,
    )


def row(of: Release, site: str, *, in_flight: bool) -> SiteSync:
    base = SiteSync(
        release_id=of.release_id,
        site=site,
        repository=of.repository,
        digest=of.digest,
        pushed_at=of.pushed_at,
        state=SyncState.PENDING,
        reason=SyncReason.AWAITING_FIRST_CHECK,
        updated_at=of.pushed_at,
        queued_at=of.pushed_at,
        in_ledger=True,
    )
    if in_flight:
        # Waiting for tonight's window: checked when it opens, expected when it closes.
        return replace(
            base,
            state=SyncState.WAITING_FOR_WINDOW,
            reason=SyncReason.WINDOW_CLOSED,
            next_check_at=NOW + timedelta(hours=1),
            expected_ready_at=NOW + timedelta(hours=4),
        )
    arrived = of.pushed_at + timedelta(minutes=40)
    return replace(
        base,
        state=SyncState.SYNCED,
        reason=SyncReason.SYNCED_AFTER_PUSH,
        updated_at=arrived,
        synced_at=arrived,
        evidence_source=EvidenceSource.ARM_LAST_SYNC,
    )


def build(path: Path, site_count: int, releases: int, in_flight: int, days: int) -> SqliteStateStore:
    store = SqliteStateStore(path)
    catalog = sites(site_count)
    store.upsert_sites(catalog)
    names = [site.name for site in catalog]
    # History spread over the same last ``days`` days whatever its size (inside the sweep's 14-day
    # horizon and the 30-day report), so only the number of releases grows; the in-flight releases
    # are the newest, pushed within the last hour.
    history = max(releases - in_flight, 1)
    for index in range(releases):
        flying = index < in_flight
        hours_ago = 0.5 + index * 0.01 if flying else 1 + (index - in_flight) * (days * 24 / history)
        made = release(index, hours_ago)
        rows = [row(made, name, in_flight=flying) for name in names]
        counts = {rows[0].state: len(rows)}
        summarized = replace(made, counts=counts, counts_as_of=NOW, next_due_at=earliest_due(rows), ledger_seeded=True)
        store.create_release(summarized)
        store.add_site_syncs(rows)
        store.seed_ledger(rows)  # what the release's first summary does
        store.publish_release(made)
    return store


def measure(call: Callable[[], Any], counter: RecordingStore) -> tuple[float, float, int]:
    """Fastest of three timed runs (seconds), then one more under tracemalloc for its peak
    allocation (MB), and the rows one run read."""
    fastest = float("inf")
    for _ in range(3):
        counter.listed.clear()
        started = time.perf_counter()
        call()
        fastest = min(fastest, time.perf_counter() - started)
    rows = counter.rows
    tracemalloc.start()
    call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return fastest, peak / 1e6, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--releases", type=int, nargs=2, default=[10, 100], metavar=("SMALL", "LARGE"))
    parser.add_argument("--in-flight", type=int, default=5)
    args = parser.parse_args()
    results: dict[int, dict[str, tuple[float, float, int]]] = {}
    # As many days of history as the smaller size has history releases (one a day there), so both
    # sizes push on the same days.
    days = max(min(args.releases) - args.in_flight, 1)
    with tempfile.TemporaryDirectory() as tmp:
        for releases in args.releases:
            began = time.perf_counter()
            store = build(Path(tmp) / f"history-{releases}.db", args.sites, releases, args.in_flight, days)
            built = time.perf_counter() - began
            counter = RecordingStore(store)
            queue = SqliteJobQueue(Path(tmp) / f"queue-{releases}.db")
            services = bootstrap(bench_settings(), store=counter, queue=queue, clock=FixedClock())  # type: ignore[arg-type]
            results[releases] = {
                "sweep": measure(lambda s=services: sweep(s), counter),
                "report": measure(lambda s=services: site_report(s, "30d"), counter),
            }
            print(f"R={releases}: built {releases * args.sites:,} rows in {built:.0f} s (not timed)")
            queue.close()
            store.close()
    small, large = args.releases
    print(
        f"\nhistory: {args.sites:,} sites, {args.in_flight} releases in flight, the others synced history pushed "
        f"over the last {days} days; SQLite store; fastest of 3"
    )
    print(f"{'':8} {'releases':>8} {'seconds':>8} {'peak MB':>8} {'rows read':>10}")
    for what in ("sweep", "report"):
        for releases in args.releases:
            seconds, peak, rows = results[releases][what]
            print(f"{what:8} {releases:>8} {seconds:8.3f} {peak:8.1f} {rows:>10,}")
    sweep_ratio = results[large]["sweep"][0] / results[small]["sweep"][0]
    report_ratio = results[large]["report"][0] / results[small]["report"][0]
    print(f"history: sweep_{large}_vs_{small}={sweep_ratio:.2f} report_{large}_vs_{small}={report_ratio:.2f}")


if __name__ == "__main__":
    main()
