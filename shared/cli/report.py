"""`acrsync report`: per site over a period, what arrived, how late, and what went stale.

Calls ``GET /api/report?since=`` (``--api-url``/``ACRSYNC_API_URL``, key in ``--api-key``/
``ACRSYNC_API_KEY``) and prints one line per site: ``table`` (default, for people), ``csv`` (a header
row, then one row per site; lags in seconds, empty when unknown), ``tsv`` (the csv columns, no header),
or ``json``/``yaml`` (the API's answer); ``--query`` (JMESPath) applies to the API's answer.

Exit codes: 0 success, 1 the API failed, 3 bad arguments (also a 400 from the API), 4 API
unreachable or unauthorized.
"""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any, TextIO

import typer

from shared.cli.app import ExitCode, app
from shared.cli.client import ApiClient, ApiError
from shared.cli.output import Output, QueryOption, plain
from shared.cli.views import format_bytes

FORMATS = ("table", "csv", "json", "jsonc", "yaml", "tsv", "none")
EXPOSURE_COLUMNS = ("repositories_approved", "drift", "over_exposed", "missing")
CSV_COLUMNS = (
    "site",
    "ring",
    "critical",
    "releases_received",
    "releases_ready",
    "lag_median_seconds",
    "lag_p95_seconds",
    "windows_missed",
    "stale_incidents",
    "repositories_approved",
    "drift",
    "over_exposed",
    "missing",
    "bytes_delivered",  # added last: a script's column numbers keep their meaning
)


@app.command("report")
def report(
    since: Annotated[str, typer.Option("--since", help="The period: days or hours back, e.g. 30d or 12h.")] = "30d",
    output: Annotated[
        str, typer.Option("--output", "-o", help="table (default), csv, json, jsonc, yaml, tsv or none.")
    ] = "table",
    query: QueryOption = None,
    api_url: Annotated[str | None, typer.Option("--api-url", help="The acrsync API (env ACRSYNC_API_URL).")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="The API key (env ACRSYNC_API_KEY).")] = None,
) -> None:
    """Per site over the period: releases received and ready, median and p95 lag from push to
    SYNCED/VERIFIED, windows missed, stale incidents and approved repositories."""
    fmt = output.strip().lower()
    if fmt not in FORMATS:
        raise typer.BadParameter(f"{output!r} is not one of {', '.join(FORMATS)}", param_hint="'-o' / '--output'")
    out = Output.from_options("json" if fmt == "csv" else fmt, query, False)
    with ApiClient(api_url, api_key) as client:
        try:
            body = client.get_json("/api/report", params={"since": since})
        except ApiError as exc:
            typer.echo(f"error: {exc.detail} ({exc.code})", err=True)
            raise typer.Exit(ExitCode.USAGE if exc.status == 400 else ExitCode.FAILED) from exc
    if fmt == "csv":
        write_csv(body.get("value", []), sys.stdout)
    elif fmt == "table" and query is None:
        print_table(body)
    elif query is None and fmt in {"tsv"}:
        out.emit([csv_row(entry) for entry in body.get("value", [])])  # the csv columns, without the header
    else:
        out.emit(body)


def csv_row(entry: dict[str, Any]) -> list[str]:
    exposure = entry.get("exposure") or {}
    flat = {**entry, **{key: exposure.get(key) for key in EXPOSURE_COLUMNS}}
    return [_field(flat.get(column)) for column in CSV_COLUMNS]


def write_csv(entries: list[dict[str, Any]], stream: TextIO) -> None:
    """RFC 4180 CSV (CRLF line ends) with a header row; ``null`` is an empty field."""
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(csv_row(entry))
    stream.flush()


def print_table(body: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=plain(f"acrsync report {_day(body.get('since'))} – {_day(body.get('until'))}"),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for column, justify in (
        ("Site", "left"),
        ("Ring", "left"),
        ("Received", "right"),
        ("Ready", "right"),
        ("Lag p50", "right"),
        ("Lag p95", "right"),
        ("Windows missed", "right"),
        ("Stale incidents", "right"),
        ("Delivered", "right"),
        ("Repos approved", "right"),
        ("Drift", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for entry in body.get("value", []):
        exposure = entry.get("exposure") or {}
        table.add_row(
            plain(str(entry["site"]) + (" ★" if entry.get("critical") else "")),
            plain(entry.get("ring", "")),
            str(entry.get("releases_received", 0)),
            str(entry.get("releases_ready", 0)),
            format_lag(entry.get("lag_median_seconds")),
            format_lag(entry.get("lag_p95_seconds")),
            str(entry.get("windows_missed", 0)),
            str(entry.get("stale_incidents", 0)),
            format_bytes(entry.get("bytes_delivered")),
            str(exposure.get("repositories_approved", "")),
            plain(_drift(exposure)),
        )
    interactive = sys.stdout.isatty()
    console = Console(file=sys.stdout) if interactive else Console(file=sys.stdout, no_color=True, width=200)
    console.print(table)


def format_lag(seconds: float | None) -> str:
    """``3725`` → ``1h 02m``, ``90`` → ``1m 30s``, ``None`` → ``—``."""
    if seconds is None:
        return "—"
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _drift(exposure: dict[str, Any]) -> str:
    if exposure.get("drift") is None:
        return "—"
    if not exposure["drift"]:
        return "none"
    return f"{exposure.get('over_exposed', 0)} over-exposed, {exposure.get('missing', 0)} missing"


def _field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _day(iso: Any) -> str:
    return str(iso or "")[:16].replace("T", " ")
