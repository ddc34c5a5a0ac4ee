"""The CLI's output formats (json, jsonc, yaml, tsv, table, none), tsv flattening, table columns,
--query and the terminal detection that turns colour on or off."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import typer
import yaml

from shared.cli import output
from shared.cli.output import Output

RELEASES: list[dict[str, Any]] = [
    {
        "id": "a" * 32,
        "repository": "inspection/camera",
        "tags": ["1.4.2", "stable"],
        "size": 1574,
        "actor": None,
        "counts": {"PENDING": 1, "VERIFIED": 2},
        "withdrawn": False,
    },
    {
        "id": "b" * 32,
        "repository": "retail/pos-api",
        "tags": [],
        "size": None,
        "actor": "ci@contoso.example",
        "counts": {"PENDING": 0, "VERIFIED": 3},
        "withdrawn": True,
    },
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def rendered(data: Any, fmt: str, stream: io.StringIO | None = None) -> str:
    out = stream if stream is not None else io.StringIO()
    output.render(data, fmt, stream=out)
    return out.getvalue()


# -- tsv --------------------------------------------------------------------------------------------


def test_tsv_prints_one_line_per_item_with_nested_objects_flattened_in_place() -> None:
    assert output.to_tsv(RELEASES).splitlines() == [
        "\t".join(["a" * 32, "inspection/camera", "1.4.2,stable", "1574", "", "1", "2", "false"]),
        "\t".join(["b" * 32, "retail/pos-api", "", "", "ci@contoso.example", "0", "3", "true"]),
    ]


def test_tsv_of_scalars_lists_and_nothing() -> None:
    assert output.to_tsv("ready") == "ready\n"
    assert output.to_tsv(0.95) == "0.95\n"
    assert output.to_tsv(True) == "true\n"
    assert output.to_tsv(["plant-01", "plant-02"]) == "plant-01\nplant-02\n"
    assert output.to_tsv([["plant-01", "canary"], ["plant-03", "prod"]]) == "plant-01\tcanary\nplant-03\tprod\n"
    assert output.to_tsv(None) == ""
    assert output.to_tsv([]) == ""
    assert output.to_tsv({}) == "\n"


def test_tsv_keeps_one_line_per_record_whatever_the_text_holds() -> None:
    assert output.to_tsv({"summary": "line one\nline\ttwo\r\n", "n": None}) == "line one line two \t\n"


def test_tsv_writes_lists_of_objects_as_compact_json() -> None:
    gate = {"state": "failed", "reasons": [{"code": "CRITICAL_SITE_BLOCKED", "sites": ["mine-07"]}]}
    assert output.to_tsv(gate) == 'failed\t[{"code":"CRITICAL_SITE_BLOCKED","sites":["mine-07"]}]\n'


# -- json, jsonc, yaml, none --------------------------------------------------------------------------


def test_json_is_indented_and_keeps_unicode() -> None:
    text = rendered({"owner": "Jörg", "n": [1]}, "json")
    assert text == '{\n  "owner": "Jörg",\n  "n": [\n    1\n  ]\n}\n'


def test_jsonc_is_coloured_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"state": "ready", "ready": 3}
    assert rendered(data, "jsonc") == rendered(data, "json")
    coloured = rendered(data, "jsonc", Terminal())
    assert "\x1b[" in coloured and json.loads(_strip_ansi(coloured)) == data
    monkeypatch.setenv("CI", "true")
    assert "\x1b[" not in rendered(data, "jsonc", Terminal())


def test_yaml_round_trips_in_key_order() -> None:
    text = rendered(RELEASES, "yaml")
    assert yaml.safe_load(text) == RELEASES
    assert text.index("id:") < text.index("repository:") < text.index("tags:")


def test_none_prints_nothing() -> None:
    assert rendered(RELEASES, "none") == ""


# -- table ------------------------------------------------------------------------------------------


def test_table_columns_are_scalars_and_non_empty_lists_of_scalars() -> None:
    assert output.table_columns(RELEASES) == ["id", "repository", "tags", "size", "actor", "withdrawn"]
    gate = [{"state": "ready", "pending": [], "blocked": [{"site": "x"}], "selection": {"kind": "all"}}]
    assert output.table_columns(gate) == ["state"]


def test_table_headers_read_like_az() -> None:
    assert output.header("expected_ready_at") == "ExpectedReadyAt"
    assert output.header("id") == "Id"


def test_a_table_on_a_pipe_is_plain_and_unwrapped() -> None:
    text = rendered(RELEASES, "table")
    lines = text.splitlines()
    assert lines[0].split() == ["Id", "Repository", "Tags", "Size", "Actor", "Withdrawn"]
    assert "\x1b[" not in text
    assert any("a" * 32 in line and "1.4.2, stable" in line and "false" in line for line in lines)
    assert any("b" * 32 in line and "ci@contoso.example" in line for line in lines)
    assert "Counts" not in text  # nested objects are left out


def test_a_table_of_one_object_of_scalars_and_of_rows() -> None:
    one = rendered({"state": "ready", "ready": 3}, "table").splitlines()
    assert one[0].split() == ["State", "Ready"] and one[-1].split() == ["ready", "3"]
    scalars = rendered(["plant-01", "plant-02"], "table").splitlines()
    assert scalars[0].strip() == "Result" and scalars[-1].strip() == "plant-02"
    rows = rendered([["plant-01", "canary"], ["plant-03"]], "table").splitlines()
    assert rows[0].split() == ["Column1", "Column2"] and rows[-1].split() == ["plant-03"]
    assert rendered(None, "table") == ""


# -- format, query and notes ------------------------------------------------------------------------


def test_formats_are_checked_case_insensitively() -> None:
    assert output.parse_format("TSV") == "tsv"
    assert output.parse_format("csv", extra=("csv",)) == "csv"
    with pytest.raises(typer.BadParameter):
        output.parse_format("csv")
    with pytest.raises(typer.BadParameter):
        output.parse_format("xml")


def test_the_query_applies_before_formatting(capsys: pytest.CaptureFixture[str]) -> None:
    Output.from_options("tsv", "[?size].[id, size]", False).emit(RELEASES)
    assert capsys.readouterr().out == f"{'a' * 32}\t1574\n"
    Output.from_options("json", "length([])", False).emit(RELEASES)
    assert capsys.readouterr().out == "2\n"
    Output.from_options("json", "[?withdrawn].nothing | [0]", False).emit(RELEASES)
    assert capsys.readouterr().out == "null\n"


def test_a_bad_query_is_a_usage_error() -> None:
    with pytest.raises(typer.BadParameter, match="invalid JMESPath"):
        Output.from_options("json", "[?", False)
    failing = Output.from_options("json", "abs(repository)", False)  # parses, fails on the data
    with pytest.raises(typer.BadParameter, match="the query failed"):
        failing.emit(RELEASES[0])


def test_notes_go_to_stderr_unless_only_errors_are_wanted(capsys: pytest.CaptureFixture[str]) -> None:
    Output.from_options("json", None, False).note("3 more pages")
    assert capsys.readouterr() == ("", "3 more pages\n")
    Output.from_options("json", None, True).note("3 more pages")
    output.error("it broke")
    assert capsys.readouterr() == ("", "error: it broke\n")


@pytest.mark.parametrize(
    ("stream", "ci", "expected"),
    [(Terminal(), None, True), (io.StringIO(), None, False), (Terminal(), "true", False), (Terminal(), "1", False)],
)
def test_a_terminal_is_interactive_unless_ci_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, ci: str | None, expected: bool
) -> None:
    if ci is not None:
        monkeypatch.setenv("CI", ci)
    assert output.is_interactive(stream) is expected


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- API data is text, never markup or terminal control -----------------------------------------------

HOSTILE_TEXT = {
    "mediaType": "application/vnd.oci[/x]+json",
    "actor": "[bold red]admin[/]",
    "tag": "1.0\x1b[2J\x1b]0;owned\x07",
    "note": "left\u202eright",
    "[/x]": "key from the API",
}


def test_a_table_shows_markup_and_control_characters_as_text() -> None:
    text = rendered([HOSTILE_TEXT], "table")
    assert "application/vnd.oci[/x]+json" in text and "[bold red]admin[/]" in text
    assert "\x1b[2J" not in text and "\x07" not in text and "\u202e" not in text
    assert "1.0\\x1b[2J\\x1b]0;owned\\x07" in text and "left\\u202eright" in text
    assert "[/x]" in text.splitlines()[0]  # the header too


def test_tsv_escapes_control_characters() -> None:
    line = rendered([HOSTILE_TEXT], "tsv")
    assert line.count("\n") == 1 and "\x1b" not in line and "\u202e" not in line
    assert line.split("\t")[2] == "1.0\\x1b[2J\\x1b]0;owned\\x07"


def test_the_report_table_shows_site_data_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.cli.report import print_table

    print_table({"since": "2026-11-01", "until": "[/x]", "value": [{"site": "[/x]\x1b[31m", "ring": "[b]"}]})
    text = capsys.readouterr().out
    assert "[/x]\\x1b[31m" in text and "[b]" in text and "\x1b[31m" not in text
