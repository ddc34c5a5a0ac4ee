"""Output of the API commands, the way ``az`` users expect it.

``-o/--output`` picks the format (default ``json``, or ``ACRSYNC_OUTPUT``): ``json`` (indented),
``jsonc`` (coloured on a terminal), ``yaml``, ``tsv`` (no headers, for scripts), ``table`` (for
people) or ``none``. ``--query`` is a JMESPath expression applied to the data **before** it is
formatted. Data goes to stdout; progress and notes go to stderr (silenced by ``--only-show-errors``),
and colour or live displays only appear on a terminal, never when ``CI=true``.

``tsv`` flattens: a list prints one line per item; an object prints its values in key order,
separated by tabs, with nested objects flattened in place, lists of scalars joined by commas, and
lists of objects as compact JSON; ``null`` is an empty field and booleans are ``true``/``false``.

``table`` shows a list of objects (or one object) with one column per key whose values are scalars
or lists of scalars; nested objects are left out (pick them with ``--query``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TextIO

import typer

OUTPUT_ENV = "ACRSYNC_OUTPUT"
CI_ENV = "CI"
# Without a terminal rich would wrap a table at 80 columns; a pipe gets each table at its natural width.
PIPE_WIDTH = 10_000


class OutputFormat(StrEnum):
    JSON = "json"
    JSONC = "jsonc"
    YAML = "yaml"
    TSV = "tsv"
    TABLE = "table"
    NONE = "none"


FORMATS = tuple(f.value for f in OutputFormat)

OutputOption = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        envvar=OUTPUT_ENV,
        show_envvar=True,
        help="Output format: json, jsonc, yaml, tsv, table or none.",
    ),
]
QueryOption = Annotated[
    str | None,
    typer.Option("--query", help="JMESPath query applied to the result before it is formatted."),
]
OnlyShowErrorsOption = Annotated[
    bool,
    typer.Option("--only-show-errors", help="Print only errors on stderr: no progress, notes or warnings."),
]


def is_interactive(stream: TextIO) -> bool:
    """A person is watching ``stream``: it is a terminal and this is not a CI run (``CI=true``)."""
    if os.environ.get(CI_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


def console_for(stream: TextIO) -> Any:
    """A rich console on ``stream``: colours and terminal width on a terminal, plain text otherwise."""
    from rich.console import Console

    if is_interactive(stream):
        return Console(file=stream)
    return Console(file=stream, force_terminal=False, no_color=True, width=PIPE_WIDTH, soft_wrap=False)


def parse_format(text: str, *, extra: Iterable[str] = ()) -> str:
    """The output format named by ``-o`` (case-insensitive).

    Raises:
        typer.BadParameter: an unknown format (a usage error: exit code 3).
    """
    allowed = (*FORMATS, *extra)
    value = text.strip().lower()
    if value not in allowed:
        raise typer.BadParameter(f"{text!r} is not one of {', '.join(allowed)}", param_hint="'-o' / '--output'")
    return value


def compile_query(expression: str | None) -> Any:
    """A compiled JMESPath expression, or ``None`` without one.

    Raises:
        typer.BadParameter: the expression does not parse (a usage error: exit code 3).
    """
    if expression is None:
        return None
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise typer.BadParameter(f"invalid JMESPath expression: {exc}", param_hint="'--query'") from exc


def apply_query(compiled: Any, data: Any) -> Any:
    """Apply a compiled expression (``None``: the data unchanged).

    Raises:
        typer.BadParameter: the expression fails on this data (e.g. a function given the wrong type).
    """
    if compiled is None:
        return data
    from jmespath.exceptions import JMESPathError

    try:
        return compiled.search(data)
    except JMESPathError as exc:
        raise typer.BadParameter(f"the query failed: {exc}", param_hint="'--query'") from exc


# -- the formats ------------------------------------------------------------------------------


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_yaml(data: Any) -> str:
    import yaml

    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


def to_tsv(data: Any) -> str:
    """Tab-separated lines without headers: one per list item (one in all for anything else)."""
    if data is None:
        return ""
    items = data if isinstance(data, list) else [data]
    return "".join("\t".join(_row_fields(item)) + "\n" for item in items)


def _row_fields(item: Any) -> list[str]:
    if isinstance(item, list):
        return [field for value in item for field in _fields(value)]
    return _fields(item)


def _fields(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [field for nested in value.values() for field in _fields(nested)]
    if isinstance(value, list):
        if all(_is_scalar(item) for item in value):
            return [",".join(scalar_text(item) for item in value)]
        return [_clean(json.dumps(value, separators=(",", ":"), ensure_ascii=False))]
    return [scalar_text(value)]


def scalar_text(value: Any) -> str:
    """A scalar as a field: ``null`` empty, booleans ``true``/``false``, tabs and newlines as spaces."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return _clean(value)
    return _clean(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _clean(text: str) -> str:
    """One line, nothing a terminal would act on: tabs and line breaks become spaces, and control
    characters (escape sequences, bidirectional overrides) are shown escaped, as ``\\x1b``."""
    text = text.replace("\r\n", " ").replace("\t", " ").replace("\n", " ").replace("\r", " ")
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == " " else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def plain(value: Any) -> Any:
    """A table cell that shows ``value`` as text: never read as rich markup (``[/x]``), controls escaped."""
    from rich.text import Text

    return Text(value if isinstance(value, str) and value.isprintable() else scalar_text(value))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Keys (in order of first appearance) whose values are scalars, or non-empty lists of scalars."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns = []
    for key in keys:
        values = [row.get(key) for row in rows]
        if all(_is_scalar(value) for value in values):
            columns.append(key)
        elif all(
            value is None or (isinstance(value, list) and all(_is_scalar(item) for item in value)) for value in values
        ) and any(values):
            columns.append(key)
    return columns


def header(key: str) -> str:
    """``expected_ready_at`` → ``ExpectedReadyAt`` (the way ``az -o table`` names columns)."""
    return "".join(part[:1].upper() + part[1:] for part in key.replace("-", "_").split("_")) or key


def build_table(data: Any) -> Any:
    """A rich Table of the data, or ``None`` when there is nothing to show."""
    from rich import box
    from rich.table import Table

    if data is None:
        return None
    rows = data if isinstance(data, list) else [data]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    if rows and all(isinstance(row, dict) for row in rows):
        columns = table_columns(rows)
        for column in columns:
            table.add_column(plain(header(column)), overflow="fold")
        for row in rows:
            table.add_row(*[_cell(row.get(column)) for column in columns])
    elif rows and all(isinstance(row, list) for row in rows):
        width = max(len(row) for row in rows)
        for index in range(width):
            table.add_column(f"Column{index + 1}", overflow="fold")
        for row in rows:
            table.add_row(*[_cell(row[i]) if i < len(row) else "" for i in range(width)])
    else:
        table.add_column("Result", overflow="fold")
        for row in rows:
            table.add_row(_cell(row))
    return table


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return plain(", ".join(scalar_text(item) for item in value))
    return plain(value)


def render(data: Any, fmt: str, *, stream: TextIO | None = None) -> None:
    """Write ``data`` to ``stream`` (stdout) in format ``fmt``."""
    out = stream if stream is not None else sys.stdout
    if fmt == OutputFormat.NONE:
        return
    if fmt == OutputFormat.JSONC and is_interactive(out):
        console_for(out).print_json(json.dumps(data, ensure_ascii=False), indent=2)
        return
    if fmt == OutputFormat.TABLE:
        table = build_table(data)
        if table is not None:
            console_for(out).print(table)
        return
    if fmt == OutputFormat.YAML:
        text = to_yaml(data)
    elif fmt == OutputFormat.TSV:
        text = to_tsv(data)
    else:
        text = to_json(data)
    out.write(text)
    out.flush()


# -- the options, as one object -----------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """What ``-o``, ``--query`` and ``--only-show-errors`` asked for, checked once up front."""

    format: str
    query: Any = None
    only_show_errors: bool = False

    @classmethod
    def from_options(
        cls, output: str, query: str | None, only_show_errors: bool, *, extra_formats: Iterable[str] = ()
    ) -> Output:
        """Raises: typer.BadParameter (exit code 3) for an unknown format or a bad expression."""
        return cls(parse_format(output, extra=extra_formats), compile_query(query), only_show_errors)

    def emit(self, data: Any) -> None:
        """Apply the query, then write the result to stdout in the chosen format."""
        render(apply_query(self.query, data), self.format)

    def emit_view(self, data: Any, view: Callable[[Any], Any]) -> None:
        """``table`` and ``tsv`` show the command's own columns (``view`` of the data); every other
        format, and any ``--query``, works on the data itself."""
        if self.query is None and self.format in {OutputFormat.TABLE.value, OutputFormat.TSV.value}:
            render(view(data), self.format)
        else:
            self.emit(data)

    def note(self, message: str) -> None:
        """A note for a person on stderr (progress, hints), unless only errors are wanted."""
        if not self.only_show_errors:
            typer.echo(message, err=True)


def error(message: str) -> None:
    """An error line on stderr (always shown)."""
    typer.echo(f"error: {message}", err=True)
