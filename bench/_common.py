"""What the benchmarks share: the fixed clock, the site catalog, the push event, settings that keep
the run out of the working tree, and the counters at the ports and on the wire."""

from __future__ import annotations

import atexit
import math
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.domain.acr_events import image_pushed_event
from shared.domain.model import Site
from shared.errors import ConcurrencyConflict
from shared.ports import ROWS_PER_TRANSACTION

NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
# The push of tests/fixtures/events/eventgrid-image-pushed.json, 48 s before NOW: the worker's fake
# connected registry reports a sync between the two, which is what makes every check SYNCED.
PUSHED_AT = datetime(2026, 11, 24, 9, 41, 12, 418924, tzinfo=UTC)
REGISTRY = "contosoacr.azurecr.io"
SUBSCRIPTION = "6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43"
TOPIC = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-contoso-registry"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)


class FixedClock:
    def now(self) -> datetime:
        return NOW


_STARTED = time.time()


class RunningClock:
    """NOW when the benchmark started, then moving with the wall clock. For runs whose queue must
    deliver scheduled messages (release summaries are due at the end of their interval): give the
    job queue the same clock. Worker processes forked from the benchmark share its start."""

    def now(self) -> datetime:
        return NOW + timedelta(seconds=time.time() - _STARTED)


def bench_settings() -> Settings:
    """Default settings but for the data dir: a new temporary folder, removed at exit, since the
    default (./.acrsync) would leave a receipt-signing key wherever the benchmark was started."""
    data_dir = tempfile.mkdtemp(prefix="acrsync-bench-")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    return Settings(data_dir=Path(data_dir))


def sites(
    count: int,
    *,
    windowed_every: int | None = None,
    critical_every: int | None = None,
    connected_registry: Callable[[int], str] | None = None,
) -> list[Site]:
    """``count`` sites in three rings, each approving ``inspection/*``.

    Args:
        windowed_every: every n-th site from the first (``i % n == 0``) syncs daily at 22:00 UTC
            for 3 hours; the others sync continuously.
        critical_every: every n-th site from the second (``i % n == 1``) is critical.
        connected_registry: the connected registry id of site ``i``.
    """
    return [
        Site(
            name=f"site-{i:05d}",
            ring=f"ring{i % 3}",
            critical=critical_every is not None and i % critical_every == 1,
            repositories=("inspection/*",),
            connected_registry=connected_registry(i) if connected_registry else None,
            schedule="0 22 * * *" if windowed_every and i % windowed_every == 0 else None,
            sync_window=timedelta(hours=3) if windowed_every and i % windowed_every == 0 else None,
        )
        for i in range(count)
    ]


def push_event() -> dict[str, Any]:
    """The fixture's push of inspection/camera:1.4.2, with a fresh event id and digest so every call
    is a new release."""
    return image_pushed_event(
        event_id=secrets.token_hex(16),
        topic=TOPIC,
        registry=REGISTRY,
        repository="inspection/camera",
        tag="1.4.2",
        digest="sha256:" + secrets.token_hex(32),
        at=PUSHED_AT,
        size=1574,
    )


class Counting:
    """Counts calls at a port (one per call), the time spent inside, and the ConcurrencyConflicts
    ``save_site_sync`` raised (each one is an ETag conflict that ``update_row`` retried).

    ``transactions`` counts round trips instead: the same, but ``add_site_syncs`` and
    ``save_site_sync_batch`` as one per ``ROWS_PER_TRANSACTION`` rows (an entity-group transaction
    each), the unit of the fan-out's floor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.calls: Counter[str] = Counter()
            self.spent: Counter[str] = Counter()
            self.conflicts = 0
            self.transactions = 0

    @property
    def seconds(self) -> float:
        return sum(self.spent.values())

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            batched = name in {"add_site_syncs", "save_site_sync_batch"}
            rounds = math.ceil(len(args[0]) / ROWS_PER_TRANSACTION) if batched else 1
            conflict = False
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            except ConcurrencyConflict:
                conflict = name == "save_site_sync"
                raise
            finally:
                spent = time.perf_counter() - started
                with self._lock:
                    self.calls[name] += 1
                    self.spent[name] += spent
                    self.conflicts += int(conflict)
                    self.transactions += rounds

        return call


class HttpCounter:
    """An azure-core ``raw_request_hook``: one call per HTTP request the pipeline sends (retries
    included; the parts of a ``$batch`` are not requests of their own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def __call__(self, request: Any) -> None:
        http = request.http_request
        kind = "batch" if http.url.split("?")[0].endswith("$batch") else http.method
        with self._lock:
            self.requests[kind] += 1

    def reset(self) -> None:
        with self._lock:
            self.requests = Counter()

    @property
    def total(self) -> int:
        return sum(self.requests.values())
