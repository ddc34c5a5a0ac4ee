"""`acrsync wait`: the pipeline step that blocks until a release may roll out.

1. **Resolve** the reference. An image reference that matches no release yet is polled for every
   ``--interval`` (the push event may still be on its way through Event Grid); so is a release id
   the API does not know yet.
2. **Poll the readiness gate** (``GET /api/releases/{id}/readiness`` with ``--ring`` or ``--sites``,
   ``--min-ready`` and ``--require-all-critical``). A ``202 pending`` answer carries ``Retry-After``:
   the next poll comes after ``max(--interval, min(Retry-After, --max-interval))`` seconds, never
   past the deadline (one last poll happens at the deadline itself).
3. **Finish**: ``ready`` prints the gate (per ``-o``/``--query``) and exits 0; ``failed`` prints
   the gate, the reasons on stderr, and exits 1; the deadline prints ``error: timed out waiting for
   <ref> after <timeout>`` with the last known state and exits 2.

Progress goes to stderr: a live table of pending and blocked sites on a terminal, one plain line
per poll otherwise (or with ``CI=true``); nothing with ``--only-show-errors``. Time comes from
:data:`clock` (``monotonic`` and ``sleep``), which tests replace so no test waits for real.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol

import typer

from shared.cli import output as output_module
from shared.cli.app import ExitCode, app
from shared.cli.client import ApiClient, ApiConnectionFailed, ApiError, retry_after_of
from shared.cli.output import OnlyShowErrorsOption, Output, OutputOption, QueryOption, error, plain, scalar_text
from shared.cli.status import (
    ApiKeyOption,
    ApiUrlOption,
    Reference,
    ReleaseArgument,
    api_errors,
    find_release,
    open_client,
    parse_reference,
    release_path,
)
from shared.cli.views import compact_time
from shared.domain.gate import parse_site_list

DEFAULT_TIMEOUT = "1h"
DEFAULT_INTERVAL = "10s"
DEFAULT_MAX_INTERVAL = "300s"
MAX_LISTED_SITES = 5
MAX_TABLE_ROWS = 25
_UNITS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}
_SHORT_DURATION = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

WAIT_HELP = (
    "Wait until a release is ready at its sites: the pipeline step before a rollout.\n\n"
    "RELEASE is a release id or an image reference (registry/repository:tag, registry/repository@sha256:..., "
    "repository:tag); a reference with no release yet is waited for (the push event may still be on its way). "
    "The readiness gate is then polled honouring its Retry-After: each pause is max(--interval, "
    "min(Retry-After, --max-interval)), never past --timeout. "
    "Durations: 30s, 10m, 2h, 1h30m, or ISO 8601 (PT30M).\n\n"
    "The final gate goes to stdout (per -o/--query); progress goes to stderr: a live table on a terminal, "
    "plain lines otherwise (CI=true), none with --only-show-errors.\n\n"
    "Exit codes:\n"
    "  0  ready\n"
    "  1  the gate failed (the reasons are printed), or the API failed\n"
    "  2  timed out (the last known state is printed)\n"
    "  3  bad arguments or configuration (also an API 400: unknown site or ring)\n"
    "  4  API unreachable, or the key was refused (401/403)\n"
)


# -- time ---------------------------------------------------------------------------------------


class Clock(Protocol):
    """Where ``wait`` gets time from: a monotonic reading in seconds, and a way to sleep."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


clock: Clock = SystemClock()
"""The clock the `wait` command uses; tests replace it with a fake that records the sleeps."""


def parse_duration(text: str, *, option: str) -> float:
    """``30s``, ``10m``, ``2h``, ``1h30m``, ``1d``, plain seconds (``90``) or ISO 8601 (``PT30M``) → seconds.

    Raises:
        typer.BadParameter: anything else, or a negative duration (exit code 3).
    """
    value = text.strip().lower()
    seconds: float | None = None
    if _NUMBER.fullmatch(value):
        seconds = float(value)
    elif value.startswith("p"):
        seconds = _iso_seconds(value.upper())
    elif value:
        match = _SHORT_DURATION.fullmatch(value)
        if match is not None and any(match.groupdict().values()):
            seconds = sum(float(amount) * _UNITS[unit] for unit, amount in match.groupdict().items() if amount)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise typer.BadParameter(
            f"{text[:64]!r} is not a duration: use 30s, 10m, 2h, 1h30m or ISO 8601 (PT30M)", param_hint=option
        )
    return seconds


def _iso_seconds(text: str) -> float | None:
    import isodate

    try:
        value = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, TypeError, AttributeError):
        return None
    if not isinstance(value, timedelta):  # months or years: no fixed length
        return None
    return value.total_seconds()


def format_seconds(seconds: float) -> str:
    """7200 → ``2h``, 5400 → ``1h30m``, 90 → ``1m30s``, 0.5 → ``0.5s``."""
    if seconds < 60 and round(seconds, 1) != round(seconds):
        return f"{round(seconds, 1):g}s"
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


# -- the wait itself ------------------------------------------------------------------------------


class Outcome(StrEnum):
    READY = "ready"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class WaitSpec:
    reference: Reference
    timeout: float
    interval: float
    max_interval: float
    sites: str | None = None
    ring: str | None = None
    min_ready: float = 1.0
    require_all_critical: bool = True
    require_running: bool = False
    fail_on_stale: bool = False  # STALE ends the wait (the gate counts it as blocked); else it is pending
    require_approval: bool = False  # the release must carry an approval link; until it does, wait on

    def gate_params(self) -> dict[str, str]:
        params = {
            "min_ready": format(self.min_ready, "g"),
            "require_all_critical": str(self.require_all_critical).lower(),
        }
        if self.require_running:
            params["require_running"] = "true"
        if self.require_approval:
            params["require_approval"] = "true"
        params["stale"] = "blocked" if self.fail_on_stale else "pending"
        if self.sites is not None:
            params["sites"] = self.sites
        if self.ring is not None:
            params["ring"] = self.ring
        return params

    def next_sleep(self, retry_after: float | None, remaining: float) -> float:
        """``max(interval, min(Retry-After, max_interval))`` (``interval`` without a Retry-After),
        never past the deadline."""
        delay = self.interval if retry_after is None else max(self.interval, min(retry_after, self.max_interval))
        return max(0.0, min(delay, remaining))


@dataclass
class WaitResult:
    outcome: Outcome
    release_id: str | None = None
    gate: dict[str, Any] | None = None
    elapsed: float = 0.0
    polls: int = 0
    sleeps: list[float] = field(default_factory=list)
    problem: str | None = None  # the last transient trouble (5xx, connection), when the last poll had one
    unreachable: ApiConnectionFailed | None = None


class Reporter(Protocol):
    """Progress on stderr while waiting."""

    def update(self, state: WaitResult, spec: WaitSpec, next_in: float) -> None: ...

    def close(self) -> None: ...


def run_wait(client: ApiClient, spec: WaitSpec, *, clock: Clock, reporter: Reporter) -> WaitResult:
    """Poll until the gate is ready or failed, or the deadline passes (see the module docstring).

    Raises:
        ApiError: a 400 (unknown site or ring: a usage error) or another answer that is not
            transient (5xx and 429 are waited out).
        ApiUnreachable: 401/403 at any time; a connection failure before the API ever answered.
    """
    start = clock.monotonic()
    deadline = start + spec.timeout
    result = WaitResult(Outcome.TIMED_OUT, release_id=spec.reference.release_id)
    answered = False
    while True:
        retry_after: float | None = None
        result.problem, result.unreachable = None, None
        result.polls += 1
        try:
            if result.release_id is None:
                assert spec.reference.image is not None
                found = find_release(client, spec.reference.image)
                answered = True
                if found is not None:
                    result.release_id = str(found["id"])
            if result.release_id is not None:
                retry_after, final = _poll_gate(client, spec, result)
                answered = True
                if final:
                    result.elapsed = clock.monotonic() - start
                    return result
        except ApiConnectionFailed as exc:
            if not answered:
                raise
            result.problem, result.unreachable = str(exc), exc
        except ApiError as exc:
            if not _transient(exc):
                raise
            result.problem, retry_after = f"the API answered {exc.status} {exc.code}: {exc.detail}", exc.retry_after
        now = clock.monotonic()
        result.elapsed = now - start
        remaining = deadline - now
        if remaining <= 0:
            result.outcome = Outcome.UNREACHABLE if result.unreachable is not None else Outcome.TIMED_OUT
            return result
        delay = spec.next_sleep(retry_after, remaining)
        reporter.update(result, spec, delay)
        result.sleeps.append(delay)
        clock.sleep(delay)


def _poll_gate(client: ApiClient, spec: WaitSpec, result: WaitResult) -> tuple[float | None, bool]:
    """One gate poll: (Retry-After, whether the answer is final); a 404 means "not there yet"."""
    assert result.release_id is not None
    response = client.request("GET", release_path(result.release_id, "/readiness"), params=spec.gate_params())
    if response.status_code == 404:
        problem = ApiError.from_response(response)
        if problem.code not in {"RELEASE_NOT_FOUND", "HTTP_404"}:
            raise problem
        result.gate = None
        return None, False
    gate = ApiClient.json_of(response)
    result.gate = gate
    state = gate.get("state")
    codes = {reason.get("code") for reason in gate.get("reasons") or []}
    if state == "failed" and codes == {"APPROVAL_MISSING"}:
        return None, False  # only the approval is missing: someone may still record it, so wait on
    if response.status_code == 200 and state in {"ready", "failed"}:
        result.outcome = Outcome.READY if state == "ready" else Outcome.FAILED
        return None, True
    return retry_after_of(response), False


def _transient(exc: ApiError) -> bool:
    return exc.status >= 500 or exc.status in {408, 429}


# -- describing where things stand --------------------------------------------------------------


def estimate(gate: dict[str, Any]) -> str:
    """``ready by 11-24 22:00Z (estimate)``, or ``ETA unknown: <why>``."""
    if gate.get("expected_ready_at"):
        late = f"; {gate['expected_ready_reason']}" if gate.get("expected_ready_reason") else ""
        return f"ready by {short_time(gate['expected_ready_at'])} (estimate{late})"
    return f"ETA unknown: {gate.get('expected_ready_reason') or 'no site has an expected ready time'}"


def gate_summary(gate: dict[str, Any]) -> str:
    return f"{gate.get('state')}: {gate.get('ready')}/{gate.get('total')} sites ready, {gate.get('required')} required"


def describe_sites(entries: list[dict[str, Any]], *, limit: int = MAX_LISTED_SITES) -> str:
    """``plant-02 (PENDING), mine-07 (FAILED SYNC_TOKEN_EXPIRED, critical), ... and 3 more``; ``none``."""
    if not entries:
        return "none"
    shown = []
    for entry in entries[:limit]:
        facts = [str(entry.get("state") or "no row")]
        if entry.get("reason"):
            facts.append(str(entry["reason"]))
        if entry.get("critical"):
            facts.append("critical")
        if entry.get("offline_since"):
            facts.append(f"offline since {entry['offline_since']}, ETA unknown")
        elif entry.get("expected_ready_at"):
            facts.append(f"expected ready {entry['expected_ready_at']}")
        shown.append(f"{entry.get('site')} ({', '.join(facts)})")
    more = len(entries) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def last_state_lines(result: WaitResult, reference: Reference) -> list[str]:
    """What was known last, for the timeout and unreachable messages."""
    if result.release_id is None:
        return [f"last known state: no release matches {reference} yet (has the push event been sent?)"]
    if result.gate is None:
        lines = [f"last known state: release {result.release_id} not found yet"]
    else:
        lines = [
            f"last known state of release {result.release_id}: {gate_summary(result.gate)}",
            f"blocked: {describe_sites(result.gate.get('blocked') or [])}",
            f"pending: {describe_sites(result.gate.get('pending') or [])}",
        ]
    if result.problem:
        lines.append(f"last problem: {result.problem}")
    return lines


def short_time(value: Any) -> str:
    """``2026-11-24T22:00:00+00:00`` → ``11-24 22:00Z`` (UTC), for the live table."""
    return compact_time(value)


def _elapsed(seconds: float) -> str:
    return f"[+{format_seconds(math.floor(seconds))}]"


class PlainReporter:
    """One line per poll on stderr (for CI logs)."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference

    def update(self, state: WaitResult, spec: WaitSpec, next_in: float) -> None:
        prefix = f"{_elapsed(state.elapsed)} {self.reference}"
        if state.release_id is None:
            line = f"{prefix}: no release yet (push event in flight?)"
        elif state.gate is None:
            line = f"{prefix}: release {state.release_id} not found yet"
        else:
            gate = state.gate
            line = (
                f"{prefix}: {gate_summary(gate)}; {estimate(gate)}; "
                f"blocked: {describe_sites(gate.get('blocked') or [])}; "
                f"pending: {describe_sites(gate.get('pending') or [])}"
            )
        if state.problem:
            line += f"; {state.problem}"
        typer.echo(f"{line}; next check in {format_seconds(next_in)}", err=True)

    def close(self) -> None:
        return None


class LiveReporter:
    """A live rich table of the pending and blocked sites on stderr (for a terminal)."""

    def __init__(self, reference: Reference) -> None:
        from rich.console import Console
        from rich.live import Live

        self.reference = reference
        self.live = Live(
            console=Console(file=sys.stderr, force_terminal=True),
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.started = False

    def update(self, state: WaitResult, spec: WaitSpec, next_in: float) -> None:
        if not self.started:
            self.live.start()
            self.started = True
        self.live.update(self._render(state, spec, next_in), refresh=True)

    def _render(self, state: WaitResult, spec: WaitSpec, next_in: float) -> Any:
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        left = max(0.0, spec.timeout - state.elapsed)
        clock_line = f"elapsed {format_seconds(math.floor(state.elapsed))} · next check in {format_seconds(next_in)} · "
        clock_line += f"{format_seconds(math.floor(left))} left"
        if state.release_id is None:
            head = Text(f"Waiting for {self.reference}: no release yet (push event in flight?)", style="bold")
            return Group(head, Text(clock_line, style="dim"))
        if state.gate is None:
            return Group(Text(f"Waiting for release {state.release_id}: not found yet", style="bold"), Text(clock_line))
        gate = state.gate
        head = Text(
            f"Waiting for {self.reference} (release {state.release_id}) · {gate_summary(gate)} · {estimate(gate)}",
            style="bold",
        )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption="* critical", caption_justify="left")
        table.add_column("Site", no_wrap=True)
        table.add_column("State", no_wrap=True)
        table.add_column("Reason", overflow="ellipsis", no_wrap=True)
        table.add_column("Expected ready", no_wrap=True)
        rows = [("blocked", e) for e in gate.get("blocked") or []] + [("pending", e) for e in gate.get("pending") or []]
        for kind, entry in rows[:MAX_TABLE_ROWS]:
            table.add_row(
                plain(str(entry.get("site")) + (" *" if entry.get("critical") else "")),
                Text(scalar_text(entry.get("state") or "-"), style="red" if kind == "blocked" else "yellow"),
                plain(entry.get("reason") or ""),
                f"offline since {short_time(entry['offline_since'])}"
                if entry.get("offline_since")
                else short_time(entry.get("expected_ready_at")),
            )
        parts: list[Any] = [head, table]
        if len(rows) > MAX_TABLE_ROWS:
            parts.append(Text(f"... and {len(rows) - MAX_TABLE_ROWS} more sites"))
        if state.problem:
            parts.append(Text(state.problem, style="yellow"))
        parts.append(Text(clock_line, style="dim"))
        return Group(*parts)

    def close(self) -> None:
        if self.started:
            self.live.stop()


class QuietReporter:
    def update(self, state: WaitResult, spec: WaitSpec, next_in: float) -> None:
        return None

    def close(self) -> None:
        return None


def make_reporter(reference: Reference, *, only_show_errors: bool) -> Reporter:
    if only_show_errors:
        return QuietReporter()
    if output_module.is_interactive(sys.stderr):
        return LiveReporter(reference)
    return PlainReporter(reference)


# -- the command ----------------------------------------------------------------------------------


@app.command("wait", help=WAIT_HELP)
def wait(  # noqa: PLR0917 - typer maps each option to a parameter
    reference: ReleaseArgument,
    ring: Annotated[str | None, typer.Option("--ring", help="Gate on every in-scope site of this ring.")] = None,
    sites: Annotated[
        str | None,
        typer.Option("--sites", help="Gate on these sites (a,b); a site the release skips counts as blocked."),
    ] = None,
    min_ready: Annotated[
        float, typer.Option("--min-ready", help="Fraction of the selected sites that must be ready (0 < x <= 1).")
    ] = 1.0,
    require_all_critical: Annotated[
        bool,
        typer.Option(
            "--require-all-critical/--no-require-all-critical", help="Every selected critical site must be ready."
        ),
    ] = True,
    require_running: Annotated[
        bool,
        typer.Option("--require-running", help="Wait until the sites run the digest, not only hold it."),
    ] = False,
    require_approval: Annotated[
        bool,
        typer.Option(
            "--require-approval",
            help="The release must also carry an approval link (acrsync annotate --approval-url); "
            "until it does, keep waiting (up to --timeout).",
        ),
    ] = False,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="failed (default): only FAILED and WITHDRAWN sites end the wait early; stale: STALE sites do too "
            "(otherwise a stale site is waited for until --timeout: it is still checked and may arrive).",
        ),
    ] = "failed",
    timeout: Annotated[str, typer.Option("--timeout", help="Give up after this long (exit code 2).")] = DEFAULT_TIMEOUT,
    interval: Annotated[str, typer.Option("--interval", help="The shortest pause between polls.")] = DEFAULT_INTERVAL,
    max_interval: Annotated[
        str, typer.Option("--max-interval", help="The longest pause between polls, whatever Retry-After says.")
    ] = DEFAULT_MAX_INTERVAL,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "json",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    out = Output.from_options(output, query, only_show_errors)
    spec = _spec(reference, ring, sites, min_ready, require_all_critical, timeout, interval, max_interval)
    if fail_on not in {"failed", "stale"}:
        raise typer.BadParameter("use failed or stale", param_hint="'--fail-on'")
    spec = replace(
        spec, require_running=require_running, fail_on_stale=fail_on == "stale", require_approval=require_approval
    )
    reporter = make_reporter(spec.reference, only_show_errors=only_show_errors)
    with api_errors(), open_client(api_url, api_key) as client:
        try:
            result = run_wait(client, spec, clock=clock, reporter=reporter)
        finally:
            reporter.close()
    _finish(result, spec, out)


def _spec(  # noqa: PLR0917
    reference: str,
    ring: str | None,
    sites: str | None,
    min_ready: float,
    require_all_critical: bool,
    timeout: str,
    interval: str,
    max_interval: str,
) -> WaitSpec:
    """Every argument checked before the API is called (each problem is exit code 3)."""
    if ring is not None and sites is not None:
        raise typer.BadParameter("use --ring or --sites, not both", param_hint="'--ring' / '--sites'")
    if not math.isfinite(min_ready) or not 0 < min_ready <= 1:
        raise typer.BadParameter("a fraction greater than 0 and at most 1, e.g. 0.95", param_hint="'--min-ready'")
    if sites is not None:
        sites = ",".join(parse_site_list(sites))
    if ring is not None and not ring.strip():
        raise typer.BadParameter("name a ring", param_hint="'--ring'")
    timeout_s = parse_duration(timeout, option="'--timeout'")
    interval_s = parse_duration(interval, option="'--interval'")
    max_interval_s = parse_duration(max_interval, option="'--max-interval'")
    if interval_s <= 0:
        raise typer.BadParameter("must be longer than 0s", param_hint="'--interval'")
    if max_interval_s < interval_s:
        raise typer.BadParameter("must be at least --interval", param_hint="'--max-interval'")
    return WaitSpec(
        reference=parse_reference(reference),
        timeout=timeout_s,
        interval=interval_s,
        max_interval=max_interval_s,
        sites=sites,
        ring=ring,
        min_ready=min_ready,
        require_all_critical=require_all_critical,
    )


def _finish(result: WaitResult, spec: WaitSpec, out: Output) -> None:
    reference = spec.reference
    if result.gate is not None:
        out.emit(result.gate)
    if result.outcome is Outcome.READY:
        assert result.gate is not None
        out.note(
            f"{reference} is ready (release {result.release_id}): {gate_summary(result.gate)}, "
            f"after {format_seconds(math.floor(result.elapsed))}"
        )
        return
    if result.outcome is Outcome.FAILED:
        assert result.gate is not None
        error(f"release {result.release_id} ({reference}) failed its readiness gate: {gate_summary(result.gate)}")
        for reason in result.gate.get("reasons") or []:
            named = ", ".join(reason.get("sites") or [])
            typer.echo(f"  {reason.get('code')}" + (f": {named}" if named else ""), err=True)
        typer.echo(f"  blocked: {describe_sites(result.gate.get('blocked') or [], limit=20)}", err=True)
        raise typer.Exit(ExitCode.FAILED)
    if result.outcome is Outcome.UNREACHABLE:
        assert result.unreachable is not None
        error(f"{result.unreachable} (still, when the {format_seconds(spec.timeout)} wait for {reference} ran out)")
        for line in last_state_lines(result, reference):
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(ExitCode.UNREACHABLE)
    error(f"timed out waiting for {reference} after {format_seconds(spec.timeout)}")
    for line in last_state_lines(result, reference):
        typer.echo(f"  {line}", err=True)
    raise typer.Exit(ExitCode.TIMED_OUT)
