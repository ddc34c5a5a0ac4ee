"""The `acrsync` API commands and `acrsync wait`, driven through ``shared.cli.main`` against the real
API served by uvicorn on a loopback port, on the embedded SQLite backend. Data is set up through
the services (ingest an Event Grid delivery, then move rows); `wait` runs on a fake clock that
records the pauses it asks for, so no test sleeps for real."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml

from orchestrations.api import create_app
from shared.adapters.outbox import SqliteOutbox
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.cli import main
from shared.cli import output as output_module
from shared.cli import wait as wait_module
from shared.cli.client import ApiClient, ApiUnreachable
from shared.cli.output import Output
from shared.cli.status import parse_reference
from shared.config import Settings
from shared.domain.changes import RowChange
from shared.domain.links import LinkRate, RateSource, Transfer
from shared.domain.model import Site
from shared.domain.states import SyncReason, SyncState
from shared.services.annotations import annotate as record_annotations
from shared.services.rows import update_row
from tests.builders import move_row, push_release, random_digest
from tests.fakes import FakeClock
from tests.support.azurite import free_port
from tests.support.server import serve

asgi_app = create_app()

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
PUSHED = datetime(2026, 11, 24, 9, 41, 12, tzinfo=UTC)
REGISTRY = "contosoacr.azurecr.io"
DIGEST = "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560"
KEY = "cli-test-api-key-0123456789"
SITES = [
    Site(name="plant-01", ring="canary", critical=True, owner="ops@contoso.example", repositories=("inspection/*",)),
    Site(name="plant-02", ring="canary", repositories=("inspection/*",)),
    Site(
        name="plant-03",
        ring="prod",
        repositories=("inspection/*",),
        schedule="0 22 * * *",
        sync_window=timedelta(hours=3),
    ),
    Site(name="store-01", ring="prod", repositories=("retail/*",)),  # out of scope for inspection/*
]
IN_SCOPE = ("plant-01", "plant-02", "plant-03")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The real ASGI app under uvicorn in a thread; each test installs its own services."""
    with serve(asgi_app) as base_url:
        yield base_url


Wire = Callable[..., Services]


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    """Build and install the services the server answers from (one SQLite file per test)."""
    built: list[Services] = []

    def make(settings: Settings | None = None) -> Services:
        store = SqliteStateStore(tmp_path / "api.db")
        if not built:
            store.upsert_sites(SITES)
        services = bootstrap(
            replace(settings or Settings(), data_dir=tmp_path),
            store=store,
            queue=SqliteJobQueue(tmp_path / "api.db", clock=lambda: NOW),
            clock=FakeClock(NOW),
            events=SqliteOutbox(tmp_path / "api.db"),
        )
        use_services(services)
        built.append(services)
        return services

    yield make
    use_services(None)
    for services in built:
        services.close()


@pytest.fixture
def services(wire: Wire) -> Services:
    return wire()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, server: str) -> None:
    """The CLI talks to the test server; nothing from the caller's environment leaks in."""
    for name in ("ACRSYNC_API_KEY", "ACRSYNC_OUTPUT", "ACRSYNC_REGISTRY", "CI", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACRSYNC_API_URL", server)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def acrsync(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


class WaitClock:
    """A monotonic clock that moves only when `wait` sleeps; records each pause and can act after it."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> WaitClock:
    clock = WaitClock()
    monkeypatch.setattr(wait_module, "clock", clock)
    return clock


def push(
    services: Services,
    repository: str = "inspection/camera",
    tag: str = "1.4.2",
    *,
    digest: str = DIGEST,
    at: datetime = PUSHED,
) -> str:
    """Push an image the way Event Grid delivers it; returns the release id."""
    return push_release(services, repository, tag, digest=digest, at=at)


def move(services: Services, release_id: str, site: str, state: SyncState, reason: SyncReason) -> None:
    move_row(services, release_id, site, state, reason, at=NOW)


def go_offline(services: Services, release_id: str, site: str, *, since: datetime) -> None:
    """The site's row as a check leaves it when its connected registry went offline at ``since``: stale, no estimate."""
    move_row(
        services,
        release_id,
        site,
        SyncState.STALE,
        SyncReason.SITE_SILENT,
        at=NOW,
        expected_ready_at=None,
        offline_since=since,
    )


def needs_two_windows(services: Services, release_id: str, site: str) -> None:
    """The site's row once the release was weighed: 1.8 GB to move over 2 Mbit/s, more than its next window."""
    transfer = Transfer((1_200_000_000, 600_000_000), LinkRate(2_000_000, RateSource.DECLARED))
    update_row(
        services.store,
        release_id,
        site,
        lambda row: RowChange(replace(row, transfer=transfer, reason=SyncReason.EXCEEDS_WINDOW)),
    )


def make_ready(services: Services, release_id: str, sites: tuple[str, ...] = IN_SCOPE) -> None:
    for site in sites:
        move(services, release_id, site, SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)


@pytest.fixture
def release_id(services: Services) -> str:
    return push(services)


# -- releases -----------------------------------------------------------------------------------


def test_releases_are_listed_newest_first_and_filtered(acrsync: Callable[..., Run], services: Services) -> None:
    older = push(services)
    newer = push(services, tag="1.5.0", digest=random_digest(), at=PUSHED + timedelta(minutes=5))
    retail = push(
        services, repository="retail/pos-api", tag="2.0.0", digest=random_digest(), at=PUSHED - timedelta(hours=1)
    )

    run = acrsync("releases")
    assert run.code == 0, run.err
    assert [r["id"] for r in run.json()] == [newer, older, retail]
    assert run.err == ""

    assert [r["id"] for r in acrsync("releases", "--repository", "inspection/camera").json()] == [newer, older]
    assert [r["id"] for r in acrsync("releases", "--tag", "1.4.2").json()] == [older]
    assert [r["id"] for r in acrsync("releases", "--digest", DIGEST).json()] == [older]
    assert acrsync("releases", "--repository", "nothing/here").json() == []


def test_releases_follow_next_links_with_all(acrsync: Callable[..., Run], services: Services) -> None:
    ids = [push(services, tag=f"1.{i}.0", digest=random_digest(), at=PUSHED + timedelta(minutes=i)) for i in range(5)]
    first_page = acrsync("releases", "--top", "2")
    assert first_page.code == 0
    assert [r["id"] for r in first_page.json()] == [ids[4], ids[3]]
    assert "--all" in first_page.err  # a note on stderr: more pages exist

    everything = acrsync("releases", "--top", "2", "--all")
    assert everything.code == 0
    assert [r["id"] for r in everything.json()] == list(reversed(ids))
    assert everything.err == ""
    quiet = acrsync("releases", "--top", "2", "--only-show-errors")
    assert quiet.code == 0 and quiet.err == ""


def test_release_listing_problems_are_usage_errors(acrsync: Callable[..., Run], release_id: str) -> None:
    run = acrsync("releases", "--digest", "sha256:abc")
    assert run.code == 3 and "INVALID_DIGEST" in run.err
    assert acrsync("releases", "--top", "0").code == 3  # checked before the API is called


# -- one release --------------------------------------------------------------------------------


def test_a_release_by_id(acrsync: Callable[..., Run], services: Services, release_id: str) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    run = acrsync("release", release_id)
    assert run.code == 0, run.err
    release = run.json()
    assert release["id"] == release_id and release["digest"] == DIGEST and release["tags"] == ["1.4.2"]
    assert {s["site"]: s["state"] for s in release["sites"]}["plant-01"] == "VERIFIED"
    assert acrsync("release", release_id.upper()).json()["id"] == release_id


@pytest.mark.parametrize(
    "reference",
    [
        f"{REGISTRY}/inspection/camera:1.4.2",
        f"{REGISTRY}/inspection/camera@{DIGEST}",
        f"{REGISTRY}/inspection/camera:1.4.2@{DIGEST}",
        "inspection/camera:1.4.2",
        f"inspection/camera@{DIGEST}",
    ],
)
def test_a_release_by_image_reference(
    acrsync: Callable[..., Run], services: Services, release_id: str, reference: str
) -> None:
    run = acrsync("release", reference)
    assert run.code == 0, run.err
    assert run.json()["id"] == release_id


def test_a_tag_resolves_to_its_newest_release(acrsync: Callable[..., Run], services: Services) -> None:
    push(services, tag="stable")
    newest = push(services, tag="stable", digest=random_digest(), at=PUSHED + timedelta(hours=1))
    assert acrsync("release", f"{REGISTRY}/inspection/camera:stable").json()["id"] == newest


def test_the_registry_of_a_reference_must_match(
    acrsync: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, release_id: str
) -> None:
    run = acrsync("release", "other.azurecr.io/inspection/camera:1.4.2")
    assert run.code == 1
    assert "no release matches other.azurecr.io/inspection/camera:1.4.2" in run.err
    monkeypatch.setenv("ACRSYNC_REGISTRY", "other.azurecr.io")  # the default registry of repository:tag
    assert acrsync("release", "inspection/camera:1.4.2").code == 1
    monkeypatch.setenv("ACRSYNC_REGISTRY", REGISTRY.upper())
    assert acrsync("release", "inspection/camera:1.4.2").json()["id"] == release_id


def test_a_missing_release_exits_1_with_a_clear_message(acrsync: Callable[..., Run], services: Services) -> None:
    run = acrsync("release", "0" * 32)
    assert run.code == 1 and run.out == ""
    assert f"release {'0' * 32} does not exist" in run.err
    run = acrsync("release", f"{REGISTRY}/inspection/camera:9.9.9")
    assert run.code == 1
    assert f"no release matches {REGISTRY}/inspection/camera:9.9.9" in run.err


@pytest.mark.parametrize(
    "reference",
    [
        "Inspection/Camera:1.0",  # upper case repository
        "inspection/camera",  # neither tag nor digest
        "inspection/camera@sha256:abc",  # short digest
        "inspection/camera:bad tag",
        f"{REGISTRY}/:1.0",
        "inspection/camera@",
        "0" * 31,
    ],
)
def test_a_malformed_reference_is_a_usage_error(acrsync: Callable[..., Run], reference: str) -> None:
    run = acrsync("release", reference)
    assert run.code == 3, run.err
    assert "INVALID_REFERENCE" in run.err and run.out == ""


def test_references_are_read_the_way_docker_reads_them() -> None:
    image = parse_reference("localhost:5000/team/app:v1").image
    assert image is not None and (image.registry, image.repository, image.tag) == ("localhost:5000", "team/app", "v1")
    image = parse_reference("team/app:v1").image
    assert image is not None and (image.registry, image.repository) == (None, "team/app")
    assert parse_reference("AB" * 16).release_id == "ab" * 16


# -- sites --------------------------------------------------------------------------------------


def test_sites_and_one_site(acrsync: Callable[..., Run], services: Services, release_id: str) -> None:
    run = acrsync("sites")
    assert run.code == 0, run.err
    assert [s["name"] for s in run.json()] == ["plant-01", "plant-02", "plant-03", "store-01"]

    move(services, release_id, "plant-02", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    site = acrsync("site", "plant-02").json()
    assert site["name"] == "plant-02" and site["ring"] == "canary"
    [state] = site["repositories_state"]
    assert (state["release_id"], state["state"]) == (release_id, "VERIFIED")

    missing = acrsync("site", "plant-99")
    assert missing.code == 1 and "site plant-99 does not exist" in missing.err
    assert acrsync("site", "Plant_01").code == 3
    assert acrsync("site", "../releases").code == 3


def test_sites_import_still_works_under_the_listing_group(
    acrsync: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ACRSYNC_DATA_DIR", str(tmp_path / "local"))
    sites_file = tmp_path / "sites.yaml"
    sites_file.write_text("sites:\n  - name: lab-01\n    ring: lab\n    repositories: ['inspection/*']\n")
    run = acrsync("sites", "import", str(sites_file))
    assert run.code == 0, run.err
    assert run.json()["added"] == ["lab-01"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [{name: Not_A_Name}]\n")
    refused = acrsync("sites", "import", str(bad))
    assert refused.code == 3 and "nothing was imported" in refused.err


# -- evidence and retry -------------------------------------------------------------------------


def test_evidence_as_json_and_as_the_apis_csv(
    acrsync: Callable[..., Run], services: Services, release_id: str, server: str
) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    move(services, release_id, "plant-02", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)

    records = acrsync("evidence", release_id).json()
    assert records and all(r["release_id"] == release_id for r in records)
    assert {r["site"] for r in records if r["summary"].startswith("test:")} == {"plant-01", "plant-02"}
    only = acrsync("evidence", release_id, "--site", "plant-02").json()
    assert only and {r["site"] for r in only} == {"plant-02"}

    run = acrsync("evidence", f"{REGISTRY}/inspection/camera:1.4.2", "-o", "csv")
    assert run.code == 0, run.err
    expected = httpx.get(f"{server}/api/releases/{release_id}/evidence?format=csv").text
    assert run.out == expected and "\r\n" in run.out
    rows = list(csv.DictReader(io.StringIO(run.out)))
    assert len(rows) == len(records) and rows[0]["release_id"] == release_id

    csv_site = acrsync("evidence", release_id, "-o", "csv", "--site", "plant-01")
    assert {row["site"] for row in csv.DictReader(io.StringIO(csv_site.out))} == {"plant-01"}
    assert acrsync("evidence", release_id, "-o", "csv", "--query", "[0]").code == 3
    assert acrsync("release", release_id, "-o", "csv").code == 3  # csv is for evidence only
    assert acrsync("evidence", "0" * 32).code == 1


def test_retry_prints_the_answer(acrsync: Callable[..., Run], services: Services, release_id: str) -> None:
    move(services, release_id, "plant-02", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    run = acrsync("retry", release_id, "--sites", "failed")
    assert run.code == 0, run.err
    assert run.json() == {"release_id": release_id, "requested": ["plant-02"], "enqueued": ["plant-02"], "skipped": []}
    assert services.store.get_site_sync(release_id, "plant-02").value.state is SyncState.PENDING

    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    named = acrsync("retry", f"{REGISTRY}/inspection/camera:1.4.2", "--sites", "plant-01,store-01").json()
    assert named["enqueued"] == [] and {s["site"] for s in named["skipped"]} == {"plant-01", "store-01"}
    assert acrsync("retry", release_id, "--sites", "Bad_Name").code == 3
    assert acrsync("retry", release_id).code == 3  # --sites is required


# -- output formats and --query -----------------------------------------------------------------


def test_every_output_format(acrsync: Callable[..., Run], services: Services, release_id: str) -> None:
    as_json = acrsync("sites", "-o", "json")
    sites = as_json.json()
    assert as_json.out.startswith("[\n  {\n")  # indented

    assert json.loads(acrsync("sites", "-o", "jsonc").out) == sites  # no colour without a terminal
    assert yaml.safe_load(acrsync("sites", "-o", "yaml").out) == sites

    tsv = acrsync("sites", "-o", "tsv").out.splitlines()
    assert len(tsv) == 4
    first = tsv[0].split("\t")  # the command's own columns: name, ring, critical, connection, schedule, window, next
    assert first[:5] == ["plant-01", "canary", "true", "", "continuous"]
    assert len({len(line.split("\t")) for line in tsv}) == 1  # the same columns on every line

    table = acrsync("sites", "-o", "table").out
    lines = table.splitlines()
    assert lines[0].split() == ["Name", "Ring", "Critical", "Connection", "Schedule", "Window", "Next", "window"]
    assert any(line.lstrip().startswith("plant-03") for line in lines)
    assert "\x1b[" not in table

    none = acrsync("sites", "-o", "none")
    assert none.code == 0 and none.out == ""


def test_each_command_has_its_own_table_that_fits_120_columns(
    acrsync: Callable[..., Run], services: Services, release_id: str
) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    releases = acrsync("releases", "-o", "table").out.splitlines()
    assert releases[0].split() == ["Repository", "Tags", "Digest", "Pushed", "Ready", "Pending", "Blocked"]
    assert releases[2].split()[:2] == ["inspection/camera", "1.4.2"] and "/3" in releases[2]  # as of its summary
    release = acrsync("release", release_id, "-o", "table").out.splitlines()
    assert release[0].split() == ["Site", "Ring", "State", "Reason", "Eta", "Arrived", "Pods", "Needs"]
    assert [line.split()[0] for line in release[2:]] == ["plant-01", "plant-02", "plant-03", "store-01"]
    for command in (["releases"], ["release", release_id], ["sites"]):
        table = acrsync(*command, "-o", "table").out
        assert max(len(line) for line in table.splitlines()) <= 120, table
    tsv = acrsync("release", release_id, "-o", "tsv").out.splitlines()
    assert {len(line.split("\t")) for line in tsv} == {8}
    assert acrsync("release", release_id, "--query", "sites[0].site", "-o", "tsv").out == "plant-01\n"  # all data


def test_an_offline_site_reads_offline_since_never_a_past_estimate(
    acrsync: Callable[..., Run], services: Services, release_id: str
) -> None:
    go_offline(services, release_id, "plant-02", since=NOW - timedelta(hours=2))
    release = acrsync("release", release_id, "-o", "table").out.splitlines()
    [plant02] = [line for line in release if line.startswith("plant-02")]
    assert "offline since 11-24 07:42Z" in plant02
    waited = acrsync("wait", release_id, "--timeout", "1")
    assert "offline since" in waited.out + waited.err and "ETA unknown" in waited.out + waited.err


GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "cli"


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("releases.table", ["releases", "-o", "table"]),
        ("release.table", ["release", "{release}", "-o", "table"]),
        ("sites.table", ["sites", "-o", "table"]),
        ("releases.tsv", ["releases", "-o", "tsv"]),
        ("release.tsv", ["release", "{release}", "-o", "tsv"]),
        ("sites.tsv", ["sites", "-o", "tsv"]),
    ],
)
def test_tables_and_tsv_match_their_golden_output(
    acrsync: Callable[..., Run],
    services: Services,
    release_id: str,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    command: list[str],
) -> None:
    """Each command's own columns, byte for byte (ACRSYNC_UPDATE_GOLDEN=1 rewrites tests/fixtures/cli)."""
    monkeypatch.setenv("COLUMNS", "120")
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    go_offline(services, release_id, "plant-02", since=NOW - timedelta(hours=2))
    needs_two_windows(services, release_id, "plant-03")
    out = acrsync(*[part.format(release=release_id) for part in command]).out.replace(release_id, "<release>")
    golden = GOLDEN / name
    if os.environ.get("ACRSYNC_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(out)
    assert out == golden.read_text()
    assert max(len(line) for line in out.splitlines()) <= 120
    if name.endswith(".tsv"):
        assert len({line.count("\t") for line in out.splitlines()}) == 1  # the same columns on every line


def test_version(acrsync: Callable[..., Run]) -> None:
    run = acrsync("--version")
    assert run.code == 0 and run.out.startswith("acrsync ")


def test_query_is_applied_before_formatting(acrsync: Callable[..., Run], services: Services, release_id: str) -> None:
    state = acrsync("release", release_id, "--query", "sites[?state=='WAITING_FOR_WINDOW'].site", "-o", "tsv")
    assert state.code == 0 and state.out == "plant-03\n"
    pairs = acrsync("sites", "--query", "[].[name, ring]", "-o", "tsv").out
    assert pairs.splitlines() == ["plant-01\tcanary", "plant-02\tcanary", "plant-03\tprod", "store-01\tprod"]
    assert acrsync("release", release_id, "--query", "id", "-o", "tsv").out == f"{release_id}\n"
    assert acrsync("release", release_id, "--query", "counts").json() == {
        "PENDING": 2,
        "SKIPPED": 1,
        "WAITING_FOR_WINDOW": 1,
    }
    table = acrsync("release", release_id, "--query", "sites[].{site: site, state: state}", "-o", "table").out
    assert "Site" in table.splitlines()[0] and "WAITING_FOR_WINDOW" in table


def test_a_bad_query_or_format_is_a_usage_error(
    acrsync: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, release_id: str
) -> None:
    bad = acrsync("release", release_id, "--query", "sites[?")
    assert bad.code == 3 and "--query" in bad.err
    assert acrsync("release", release_id, "--query", "abs(id)").code == 3  # fails on the data
    assert acrsync("sites", "-o", "xml").code == 3
    monkeypatch.setenv("ACRSYNC_OUTPUT", "tsv")
    assert acrsync("sites", "--query", "[0].name").out == "plant-01\n"
    assert acrsync("sites", "--query", "[0].name", "-o", "json").out == '"plant-01"\n'


# -- wait -----------------------------------------------------------------------------------------


def test_wait_exits_0_and_prints_the_gate_when_ready(
    acrsync: Callable[..., Run], services: Services, release_id: str, fake_clock: WaitClock
) -> None:
    make_ready(services, release_id)
    run = acrsync("wait", f"{REGISTRY}/inspection/camera:1.4.2")
    assert run.code == 0, run.err
    gate = run.json()
    assert gate["state"] == "ready" and gate["release_id"] == release_id and gate["ready"] == 3
    assert fake_clock.sleeps == []
    assert "is ready" in run.err
    quiet = acrsync("wait", release_id, "--only-show-errors", "--query", "state", "-o", "tsv")
    assert (quiet.code, quiet.out, quiet.err) == (0, "ready\n", "")


def test_wait_exits_1_with_the_reasons_when_the_gate_fails(
    acrsync: Callable[..., Run], services: Services, release_id: str, fake_clock: WaitClock
) -> None:
    move(services, release_id, "plant-01", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED)
    run = acrsync("wait", release_id, "--ring", "canary")
    assert run.code == 1
    assert run.json()["state"] == "failed"
    assert f"error: release {release_id}" in run.err and "failed its readiness gate" in run.err
    assert "CRITICAL_SITE_BLOCKED: plant-01" in run.err
    assert "plant-01 (FAILED, SYNC_TOKEN_EXPIRED, critical)" in run.err
    assert fake_clock.sleeps == []


def test_wait_exits_2_on_timeout_with_the_last_known_state(
    acrsync: Callable[..., Run], services: Services, release_id: str, fake_clock: WaitClock
) -> None:
    run = acrsync("wait", f"{REGISTRY}/inspection/camera:1.4.2", "--ring", "canary", "--timeout", "2m")
    assert run.code == 2
    assert fake_clock.sleeps == [60, 60]  # Retry-After 60, then the deadline; one last poll at it
    assert f"error: timed out waiting for {REGISTRY}/inspection/camera:1.4.2 after 2m" in run.err
    assert f"last known state of release {release_id}: pending: 0/2 sites ready, 2 required" in run.err
    assert (
        "pending: plant-01 (PENDING, AWAITING_FIRST_CHECK, critical, expected ready 2026-11-24T09:43:00+00:00)"
        in run.err
    )
    assert run.json()["state"] == "pending"  # the last gate answer, for scripts


def test_wait_waits_for_the_release_to_appear(
    acrsync: Callable[..., Run], services: Services, fake_clock: WaitClock
) -> None:
    def later(sleeps: int) -> None:
        if sleeps == 3:  # the push event arrives while wait polls
            make_ready(services, push(services))

    fake_clock.on_sleep = later
    run = acrsync("wait", f"{REGISTRY}/inspection/camera:1.4.2", "--interval", "15s")
    assert run.code == 0, run.err
    assert fake_clock.sleeps == [15, 15, 15]
    assert run.json()["state"] == "ready"
    assert run.err.count("no release yet") == 3  # one plain progress line per poll (stderr is not a TTY)


def test_wait_for_a_release_that_never_appears_times_out(
    acrsync: Callable[..., Run], services: Services, fake_clock: WaitClock
) -> None:
    run = acrsync("wait", "inspection/camera:7.0.0", "--timeout", "PT1M", "--interval", "20s")
    assert run.code == 2
    assert fake_clock.sleeps == [20, 20, 20]
    assert "timed out waiting for inspection/camera:7.0.0 after 1m" in run.err
    assert "no release matches inspection/camera:7.0.0 yet" in run.err
    assert run.out == ""


@pytest.mark.parametrize(
    ("arguments", "sleeps"),
    [
        (("--ring", "canary"), [60, 60]),  # Retry-After 60 (the predicted ready time of the canary sites)
        (("--ring", "canary", "--interval", "90s"), [90, 90]),  # --interval is a floor
        (("--ring", "prod", "--max-interval", "5m"), [300, 300]),  # Retry-After 3600 capped at --max-interval
        (("--ring", "prod", "--max-interval", "2h"), [3600, 3600]),  # the server's Retry-After, as it is
    ],
)
def test_wait_honours_retry_after(
    acrsync: Callable[..., Run],
    services: Services,
    release_id: str,
    fake_clock: WaitClock,
    arguments: tuple[str, ...],
    sleeps: list[float],
) -> None:
    def later(count: int) -> None:
        if count == 2:
            make_ready(services, release_id)

    fake_clock.on_sleep = later
    run = acrsync("wait", release_id, *arguments, "--timeout", "1d")
    assert run.code == 0, run.err
    assert fake_clock.sleeps == sleeps
    assert run.err.count("next check in") == 2


def test_wait_never_sleeps_past_the_deadline(
    acrsync: Callable[..., Run], release_id: str, fake_clock: WaitClock
) -> None:
    run = acrsync("wait", release_id, "--ring", "canary", "--timeout", "100s")
    assert run.code == 2
    assert fake_clock.sleeps == [60, 40]


def test_wait_passes_the_gate_policy(
    acrsync: Callable[..., Run], services: Services, release_id: str, fake_clock: WaitClock
) -> None:
    move(services, release_id, "plant-02", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    run = acrsync("wait", release_id, "--sites", "plant-01,plant-02", "--min-ready", "0.5", "--no-require-all-critical")
    assert run.code == 0, run.err
    gate = run.json()
    assert gate["selection"] == {"kind": "sites", "sites": ["plant-01", "plant-02"], "ring": None}
    assert gate["min_ready"] == 0.5 and gate["require_all_critical"] is False and gate["required"] == 1


def test_wait_shows_a_live_table_on_a_terminal(
    acrsync: Callable[..., Run],
    services: Services,
    release_id: str,
    fake_clock: WaitClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(output_module, "is_interactive", lambda stream: True)
    fake_clock.on_sleep = lambda count: make_ready(services, release_id) if count == 1 else None
    run = acrsync("wait", release_id)
    assert run.code == 0, run.err
    assert "\x1b[" in run.err  # drawn with terminal control codes
    for text in ("Site", "State", "Expected ready", "plant-03", "WAITING_FOR_WINDOW"):
        assert text in run.err
    assert json.loads(run.out)["state"] == "ready"  # data on stdout stays plain JSON


@pytest.mark.parametrize(
    "arguments",
    [
        ("--timeout", "soon"),
        ("--timeout", "P1M"),  # months have no fixed length
        ("--timeout", "-5s"),
        ("--interval", "0s"),
        ("--interval", "10m", "--max-interval", "5m"),
        ("--ring", "canary", "--sites", "plant-01"),
        ("--min-ready", "0"),
        ("--min-ready", "1.5"),
        ("--sites", "Plant_01"),
        ("-o", "xml"),
        ("--query", "]["),
    ],
)
def test_wait_refuses_bad_arguments_with_3(
    acrsync: Callable[..., Run], fake_clock: WaitClock, arguments: tuple[str, ...]
) -> None:
    run = acrsync("wait", "0" * 32, *arguments)
    assert run.code == 3, run.err
    assert fake_clock.sleeps == []


def test_wait_refuses_a_malformed_reference_and_an_unknown_ring_with_3(
    acrsync: Callable[..., Run], release_id: str, fake_clock: WaitClock
) -> None:
    run = acrsync("wait", "registry.example/Bad:ref")
    assert run.code == 3 and "INVALID_REFERENCE" in run.err
    unknown = acrsync("wait", release_id, "--ring", "nowhere")
    assert unknown.code == 3 and "UNKNOWN_RING" in unknown.err


def test_durations() -> None:
    parse = wait_module.parse_duration
    assert [parse(t, option="x") for t in ("30s", "10m", "2h", "1h30m", "1d", "90", "PT30M", "P1DT1H", "0.5s")] == [
        30,
        600,
        7200,
        5400,
        86400,
        90,
        1800,
        90000,
        0.5,
    ]
    fmt = wait_module.format_seconds
    assert [fmt(s) for s in (7200, 5400, 90, 0.5, 0, 86400 + 61)] == ["2h", "1h30m", "1m30s", "0.5s", "0s", "1d1m1s"]


# -- unreachable and unauthorized: exit 4 ------------------------------------------------------------


def test_a_closed_port_exits_4(acrsync: Callable[..., Run], fake_clock: WaitClock) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    for args in (("releases",), ("sites",), ("release", "0" * 32), ("wait", "inspection/camera:1.0")):
        run = acrsync(*args, "--api-url", closed)
        assert run.code == 4, (args, run.err)
        assert f"cannot reach the acrsync API at {closed}" in run.err
    assert fake_clock.sleeps == []


def test_a_wrong_key_exits_4_and_the_right_one_works(
    acrsync: Callable[..., Run], wire: Wire, monkeypatch: pytest.MonkeyPatch, release_id: str, fake_clock: WaitClock
) -> None:
    services = wire(Settings.from_environ({"ACRSYNC_API_KEY": KEY}))
    make_ready(services, release_id)
    for args in (("sites",), ("release", release_id), ("wait", release_id), ("evidence", release_id, "-o", "csv")):
        run = acrsync(*args, "--api-key", "not-the-key-at-all")
        assert run.code == 4, (args, run.err)
        assert "refused the request (401)" in run.err and "not-the-key" not in run.err
        assert acrsync(*args).code == 4  # no key at all
    assert acrsync("wait", release_id, "--api-key", KEY).code == 0
    monkeypatch.setenv("ACRSYNC_API_KEY", KEY)
    assert acrsync("sites").code == 0


def test_a_bad_api_url_is_a_configuration_error(acrsync: Callable[..., Run]) -> None:
    run = acrsync("sites", "--api-url", "ftp://example.com")
    assert run.code == 3 and "--api-url" in run.err


# -- wait against a scripted API: transient trouble on the way -------------------------------------


def scripted(*answers: Callable[[httpx.Request], httpx.Response]) -> tuple[ApiClient, list[str]]:
    """A client whose API answers with ``answers`` in turn (the last one for ever)."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return answers[min(len(seen), len(answers)) - 1](request)

    return ApiClient("http://api.test", transport=httpx.MockTransport(handler)), seen


def pending(seconds: int) -> Callable[[httpx.Request], httpx.Response]:
    body = {"state": "pending", "ready": 0, "total": 1, "required": 1, "pending": [], "blocked": []}
    return lambda request: httpx.Response(202, json=body, headers={"Retry-After": str(seconds)})


def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_wait_rides_out_5xx_and_dropped_connections_after_the_first_answer() -> None:
    release = "ab" * 16
    client, seen = scripted(
        pending(30),
        lambda r: httpx.Response(
            503, json={"code": "BACKEND_UNAVAILABLE", "detail": "busy"}, headers={"Retry-After": "45"}
        ),
        dropped,
        lambda r: httpx.Response(200, json={"state": "ready", "ready": 1, "total": 1, "required": 1}),
    )
    clock = WaitClock()
    spec = wait_module.WaitSpec(parse_reference(release), timeout=3600, interval=10, max_interval=300)
    result = wait_module.run_wait(client, spec, clock=clock, reporter=wait_module.QuietReporter())
    assert result.outcome is wait_module.Outcome.READY
    assert clock.sleeps == [30, 45, 10]  # Retry-After of the 202 and of the 503; the interval after a drop
    assert all(
        re.search(rf"/api/releases/{release}/readiness\?min_ready=1&require_all_critical=true&stale=pending$", u)
        for u in seen
    )


def test_wait_that_loses_the_api_for_good_exits_4_at_the_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    client, _ = scripted(pending(30), dropped)
    clock = WaitClock()
    spec = wait_module.WaitSpec(parse_reference("ab" * 16), timeout=60, interval=10, max_interval=300)
    result = wait_module.run_wait(client, spec, clock=clock, reporter=wait_module.QuietReporter())
    assert result.outcome is wait_module.Outcome.UNREACHABLE
    assert clock.sleeps == [30, 10, 10, 10]
    with pytest.raises(typer.Exit) as exited:
        wait_module._finish(result, spec, Output.from_options("none", None, False))
    assert exited.value.exit_code == 4
    err = capsys.readouterr().err
    assert "cannot reach the acrsync API at http://api.test" in err and "pending: 0/1 sites ready" in err


def test_wait_never_reached_exits_4_at_once() -> None:
    client, seen = scripted(dropped)
    clock = WaitClock()
    spec = wait_module.WaitSpec(parse_reference("ab" * 16), timeout=3600, interval=10, max_interval=300)
    with pytest.raises(ApiUnreachable):
        wait_module.run_wait(client, spec, clock=clock, reporter=wait_module.QuietReporter())
    assert clock.sleeps == [] and len(seen) == 1


def test_wait_waits_out_a_stale_site_until_its_timeout_unless_told_to_fail_on_stale(
    acrsync: Callable[..., Run], services: Services, release_id: str, fake_clock: WaitClock
) -> None:
    move(services, release_id, "plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT)
    move(services, release_id, "plant-02", SyncState.STALE, SyncReason.SITE_OFFLINE)
    run = acrsync("wait", release_id, "--ring", "canary", "--timeout", "2m")
    assert run.code == 2, run.err  # a stale site is still checked and may arrive: wait for it
    gate = run.json()
    assert gate["state"] == "pending" and gate["stale"] == "pending"
    assert gate["expected_ready_at"] is None and "plant-02 (STALE SITE_OFFLINE)" in gate["expected_ready_reason"]
    assert "ETA unknown: no expected ready time for plant-02 (STALE SITE_OFFLINE)" in run.err
    failing = acrsync("wait", release_id, "--ring", "canary", "--fail-on", "stale")
    assert failing.code == 1 and failing.json()["reasons"][0]["code"] == "TOO_MANY_BLOCKED"
    assert acrsync("wait", release_id, "--fail-on", "sometimes").code == 3


def test_retry_skips_an_offline_site_unless_forced_and_its_return_to_stale_is_no_new_incident(
    acrsync: Callable[..., Run], services: Services, release_id: str
) -> None:
    move(services, release_id, "plant-02", SyncState.STALE, SyncReason.SITE_OFFLINE)
    run = acrsync("retry", release_id, "--sites", "stale")
    assert run.code == 0, run.err
    assert run.json()["enqueued"] == [] and run.json()["skipped"] == [
        {"site": "plant-02", "state": "STALE", "reason": "SITE_OFFLINE"}
    ]
    assert "not retried, offline: plant-02" in run.err
    assert services.store.get_site_sync(release_id, "plant-02").value.state is SyncState.STALE  # unchanged

    forced = acrsync("retry", release_id, "--sites", "stale", "--force")
    assert forced.json()["enqueued"] == ["plant-02"]
    before = services.store.get_site_sync(release_id, "plant-02").value
    assert before.state is SyncState.PENDING and before.stale_incidents == 1
    move(services, release_id, "plant-02", SyncState.STALE, SyncReason.SITE_OFFLINE)  # straight back: still offline
    assert services.store.get_site_sync(release_id, "plant-02").value.stale_incidents == 1


APPROVAL = "https://dev.azure.com/contoso/edge/_releaseProgress?releaseId=4711"


def test_annotate_records_runbook_fields_and_refuses_bad_ones(
    acrsync: Callable[..., Run], services: Services, release_id: str
) -> None:
    run = acrsync("annotate", release_id, "--owner", "vision-team", "--approval-url", APPROVAL)
    assert run.code == 0, run.err
    assert run.json()["owner"] == "vision-team" and run.json()["approval_url"] == APPROVAL
    shown = acrsync(
        "release", f"{REGISTRY}/inspection/camera:1.4.2", "--query", "annotations.approval_url", "-o", "tsv"
    )
    assert shown.out.strip() == APPROVAL

    bad = acrsync("annotate", release_id, "--approval-url", "approvals/4711")
    assert bad.code == 3 and "INVALID_APPROVAL_URL" in bad.err
    assert acrsync("annotate", release_id, "--note", "x" * 5000).code == 3
    assert acrsync("annotate", release_id).code == 3  # nothing to record
    missing = acrsync("annotate", "0" * 32, "--owner", "ops")
    assert missing.code == 1 and "does not exist" in missing.err
    after = acrsync("release", release_id).json()
    assert after["annotations"]["note"] is None and len(after["annotation_history"]) == 1


def test_wait_for_an_approval_keeps_waiting_until_it_is_recorded(
    acrsync: Callable[..., Run], services: Services, release_id: str, fake_clock: WaitClock
) -> None:
    make_ready(services, release_id)

    def approve(sleeps: int) -> None:
        if sleeps == 2:
            record_annotations(services, release_id, {"approval_url": APPROVAL}, actor="change-board")

    fake_clock.on_sleep = approve
    run = acrsync("wait", release_id, "--require-approval", "--interval", "15s")
    assert run.code == 0, run.err
    assert fake_clock.sleeps == [15, 15]  # failed for APPROVAL_MISSING twice: waited on, not given up
    assert run.json()["require_approval"] is True

    unapproved = push(services, tag="1.5.0", digest=random_digest())
    make_ready(services, unapproved)
    assert acrsync("wait", unapproved, "--require-approval", "--timeout", "1m").code == 2
