"""`acrsync demo`: the whole story in about a minute, told in plain language.

It runs the local orchestrator in this process on a clock that runs faster than the wall clock
(30x by default), so the demo sites' sync windows come every few seconds: a push fans out, sites
sync in their windows and the gate opens; then a site loses its link, goes stale, comes back and
recovers.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from shared.cli.app import ExitCode, app
from shared.domain.acr_events import image_pushed_event
from shared.domain.gate import GatePolicy, GateSelection, GateState
from shared.domain.states import SyncState
from shared.local.environment import DevEnvironment, DevOptions
from shared.local.names import registry_topic
from shared.services.ingest import ingest_event
from shared.services.status import readiness

DEMO_REGISTRY = "contosoacr.azurecr.io"


class AcceleratedClock:
    """Wall-clock time, sped up: ``speed`` seconds pass for every real second."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._start = datetime.now(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)


@app.command()
def demo(
    speed: Annotated[
        float, typer.Option(help="How much faster than real time the demo clock runs.", min=1, max=600)
    ] = 30,
    sites: Annotated[Path, typer.Option(help="The sites file to use.", exists=True, dir_okay=False)] = Path(
        "sites.yaml"
    ),
    timeout: Annotated[float, typer.Option(help="Give up after this many real seconds.", min=10)] = 240,
) -> None:
    """A guided demo: push -> fan-out -> windows -> verified -> gate ready; a site offline -> stale -> back."""
    clock = AcceleratedClock(speed)
    with tempfile.TemporaryDirectory(prefix="acrsync-demo-") as data_dir:
        environment = DevEnvironment(DevOptions(data_dir=Path(data_dir), sites_file=sites), environ={}, clock=clock)
        parsed = environment.load_sites()
        environment.start()
        story = Story(environment, clock, deadline=time.monotonic() + timeout)
        try:
            story.tell(len(parsed.sites) if parsed else 0)
        finally:
            environment.stop()
    if not story.succeeded:
        raise typer.Exit(ExitCode.FAILED)


class Story:
    def __init__(self, environment: DevEnvironment, clock: AcceleratedClock, *, deadline: float) -> None:
        self.env, self.clock, self.deadline = environment, clock, deadline
        self.seen: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.succeeded = False

    def tell(self, site_count: int) -> None:
        say(f"{site_count} sites loaded (a factory, a mine, a store chain).")
        say(f"The demo clock runs {self.clock.speed:g}x faster than the wall clock, so windows come in seconds.")
        first = self.push("inspection/camera", "1.5.0")
        if not self.until(first, lambda: self.gate(first) is GateState.READY):
            return
        say(f"Every in-scope site holds the release: the gate is open, and `acrsync wait` exits 0. ({self.elapsed()})")
        say("The mine loses its satellite link (mine-07 goes offline), and a new version is pushed.")
        assert self.env.simulation is not None
        self.env.simulation.set_online("mine-07", False)
        second = self.push("inspection/camera", "1.6.0")
        if not self.until(second, lambda: self.state(second, "mine-07") is SyncState.STALE):
            return
        say("Alert: mine-07 is stale; the gate stays closed because the mine is critical. The link comes back.")
        self.env.simulation.set_online("mine-07", True)
        if not self.until(second, lambda: self.gate(second) is GateState.READY):
            return
        say(f"mine-07 caught up without flapping; the gate for 1.6.0 is open. ({self.elapsed()}) Demo complete.")
        self.succeeded = True

    def push(self, repository: str, tag: str) -> str:
        now = self.clock.now()
        digest = "sha256:" + hashlib.sha256(secrets.token_bytes(32)).hexdigest()
        event = image_pushed_event(
            event_id=secrets.token_hex(16),
            topic=registry_topic(DEMO_REGISTRY),
            registry=DEMO_REGISTRY,
            repository=repository,
            tag=tag,
            digest=digest,
            at=now,
            size=1574,
        )
        result = ingest_event(self.env.services, event)
        rows = self.env.services.store.list_site_syncs(result.release_id or "")
        skipped = [
            f"{r.value.site} ({r.value.reason.value if r.value.reason else ''})"
            for r in rows
            if r.value.state is SyncState.SKIPPED
        ]
        say(
            f"Pushed {repository}:{tag}: {result.jobs_sent} sites must get it; skipped: {', '.join(skipped) or 'none'}."
        )
        return result.release_id or ""

    def until(self, release_id: str, done: Callable[[], bool]) -> bool:
        while time.monotonic() < self.deadline:
            self.narrate(release_id)
            if done():
                return True
            time.sleep(0.5)
        say("The demo ran out of time; see the dashboard for where it stopped.")
        return False

    def narrate(self, release_id: str) -> None:
        for versioned in self.env.services.store.list_site_syncs(release_id):
            row = versioned.value
            if row.state is SyncState.SKIPPED:
                continue
            key, now = (release_id, row.site), (row.state.value, row.reason.value if row.reason else None)
            if self.seen.get(key) != now:
                self.seen[key] = now
                when = (
                    f", expected by {row.expected_ready_at:%H:%M} (demo time)"
                    if row.expected_ready_at and row.state not in (SyncState.SYNCED, SyncState.VERIFIED)
                    else ""
                )
                say(f"  {row.site:<11} {row.state.value.lower().replace('_', ' ')} ({now[1] or '-'}){when}")

    def gate(self, release_id: str) -> GateState:
        verdict = readiness(self.env.services, release_id, GateSelection(), GatePolicy()).verdict
        return verdict.state

    def state(self, release_id: str, site: str) -> SyncState:
        return self.env.services.store.get_site_sync(release_id, site).value.state

    def elapsed(self) -> str:
        return f"{self.clock.now():%H:%M} demo time"


def say(text: str) -> None:
    typer.echo(text, err=False)
