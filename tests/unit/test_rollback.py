"""Rollback readiness and reporting, the parts without a store: presence by evidence, the gate with
rollback checks, the percentiles and periods of the report, and the CLI's formatting; plus the
search bound on SQLite."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap
from shared.cli.report import csv_row, format_lag, write_csv
from shared.config import Settings
from shared.domain.gate import FailureCode, GatePolicy, GateSelection, GateState, RollbackCheck, evaluate
from shared.domain.ledger import LedgerEntry, LedgerFigures
from shared.domain.model import Site
from shared.domain.observations import ConnectedRegistryState, ConnectionState, SyncScope
from shared.domain.states import EvidenceSource, SyncState
from shared.errors import InvalidInput
from shared.services import rollback
from shared.services.report import parse_since, site_report
from shared.services.rollback import RollbackReason, presence_from_evidence, site_rollback
from tests.builders import T0, make_evidence, make_release, make_row
from tests.fakes import FakeArmReader, FakeClock

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RELEASE = make_release()


# -- presence by evidence -----------------------------------------------------------------------


def test_presence_follows_the_latest_evidence_of_the_site() -> None:
    row = replace(make_row(RELEASE, "plant-01", state=SyncState.VERIFIED), verified_at=NOW)
    proof = make_evidence(row, at=NOW, source=EvidenceSource.OCI_PROBE, state_to=SyncState.VERIFIED)
    deleted = make_evidence(
        row,
        at=NOW + timedelta(hours=1),
        summary="deleted at the site",
        source=EvidenceSource.CONNECTED_REGISTRY_EVENT,
        details={"event_type": "Microsoft.ContainerRegistry.ImageDeleted"},
    )
    parent_deleted = replace(deleted, source=EvidenceSource.PARENT_REGISTRY_EVENT, observed_at=NOW + timedelta(hours=2))
    pushed_again = replace(
        deleted, details={"event_type": "Microsoft.ContainerRegistry.ImagePushed"}, observed_at=NOW + timedelta(hours=3)
    )
    elsewhere = replace(deleted, site="plant-02", observed_at=NOW + timedelta(days=1))

    assert presence_from_evidence(row, [proof]) == rollback.Presence(True, "oci-probe", NOW)
    assert presence_from_evidence(row, [deleted, proof, elsewhere]).present is False  # order does not matter
    # The parent's deletion says nothing about the site; a later edge push brings it back.
    assert presence_from_evidence(row, [proof, deleted, parent_deleted]).present is True
    assert presence_from_evidence(row, [proof, deleted, pushed_again]).present is True
    bare = presence_from_evidence(replace(row, evidence_source=EvidenceSource.ARM_LAST_SYNC), [])
    assert bare == rollback.Presence(True, "arm-last-sync", NOW)


# -- the gate -----------------------------------------------------------------------------------


def _gate(
    checks: dict[str, RollbackCheck] | None, *, require: bool, selection: GateSelection | None = None
) -> tuple[GateState, list[tuple[str, tuple[str, ...]]], bool | None]:
    rows = [make_row(RELEASE, name, state=SyncState.VERIFIED) for name in ("a-1", "a-2")]
    rows.append(make_row(RELEASE, "b-1", state=SyncState.SKIPPED))
    sites = [Site(name=name) for name in ("a-1", "a-2", "b-1")]
    verdict = evaluate(
        RELEASE,
        rows,
        sites,
        selection=selection or GateSelection(),
        policy=GatePolicy(require_rollback=require),
        now=NOW,
        rollback=checks,
    )
    return verdict.state, [(r.code.value, r.sites) for r in verdict.reasons], verdict.rollback_ready


READY = RollbackCheck("a-1", True, "PREVIOUS_PRESENT", "p" * 32)
GONE = RollbackCheck("a-2", False, "PREVIOUS_NOT_PRESENT", "p" * 32)


def test_require_rollback_fails_the_gate_naming_the_sites_that_cannot_go_back() -> None:
    assert _gate({"a-1": READY, "a-2": GONE}, require=True) == (
        GateState.FAILED,
        [(FailureCode.ROLLBACK_NOT_READY.value, ("a-2",))],
        False,
    )
    assert _gate({"a-1": READY, "a-2": replace(GONE, ready=True)}, require=True) == (GateState.READY, [], True)
    # Without the parameter the gate only reports it.
    assert _gate({"a-1": READY, "a-2": GONE}, require=False) == (GateState.READY, [], False)
    # A site nobody checked cannot prove it could roll back; without checks at all nothing is said.
    assert _gate({"a-1": READY}, require=True)[1] == [("ROLLBACK_NOT_READY", ("a-2",))]
    assert _gate(None, require=False) == (GateState.READY, [], None)
    # Only selected sites count, and an out-of-scope pick is blocked already, not asked about rollback.
    picked = GateSelection(sites=("a-1", "b-1"))
    assert _gate({"a-1": READY, "a-2": GONE}, require=True, selection=picked)[1] == [("TOO_MANY_BLOCKED", ("b-1",))]


# -- the report's numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p50", "p95"),
    [
        ([], None, None),
        ([42.0], 42.0, 42.0),
        ([60.0, 120.0], 90.0, 117.0),
        ([600.0, 60.0, 240.0, 120.0, 180.0], 180.0, 528.0),
        ([float(n) for n in range(1, 21)], 10.5, 19.05),
        ([float(n) for n in range(1, 22)], 11.0, 20.0),
        ([0.0, 0.2, 86_400.0 * 3], 0.2, 233_280.02),
    ],
)
def test_median_and_p95_from_the_lag_histogram_are_within_its_bucket_width(
    values: list[float], p50: float | None, p95: float | None
) -> None:
    """The exact values (linear interpolation between closest ranks, numpy's default) beside the
    histogram's estimates: each within 2.5 % (half a bucket), and under a second within one."""
    figures = LedgerFigures()
    for n, lag in enumerate(values):
        figures.add(LedgerEntry("s", f"{n:032x}", T0, True, lag, 0, False))
    for fraction, exact in ((0.5, p50), (0.95, p95)):
        estimate = figures.lag_percentile(fraction)
        if exact is None:
            assert estimate is None
        else:
            assert estimate is not None and abs(estimate - exact) <= max(0.025 * exact, 1.0), (fraction, estimate)
    # Taking an entry out again leaves the histogram as it was.
    if values:
        before = figures.as_dict()
        extra = LedgerEntry("s", "f" * 32, T0, False, 77.0, 2, True)
        figures.add(extra)
        figures.add(extra, -1)
        assert figures.as_dict() == before


def test_periods() -> None:
    assert parse_since("30d") == timedelta(days=30) and parse_since("12h") == timedelta(hours=12)
    assert parse_since(" 366d ") == timedelta(days=366)
    for bad in ("", "0d", "30", "d", "1.5d", "367d", "9000h", "30D", "1w", "x" * 100):
        with pytest.raises(InvalidInput) as raised:
            parse_since(bad)
        assert raised.value.code == "INVALID_SINCE"


def test_the_cli_formats_lags_and_csv() -> None:
    assert [format_lag(s) for s in (None, 0, 59.4, 90, 3725, 86_400 * 2 + 3600)] == [
        "—",
        "0s",
        "59s",
        "1m 30s",
        "1h 02m",
        "2d 01h",
    ]
    entry = {
        "site": "plant-01",
        "ring": "canary",
        "critical": True,
        "releases_received": 2,
        "releases_ready": 1,
        "lag_median_seconds": 12.5,
        "lag_p95_seconds": None,
        "windows_missed": 0,
        "stale_incidents": 1,
        "bytes_delivered": 199_001_547,
        "exposure": {"repositories_approved": 3, "drift": True, "over_exposed": 1, "missing": 0},
    }
    assert csv_row(entry) == [
        *("plant-01", "canary", "true", "2", "1", "12.5", "", "0", "1", "3", "true", "1", "0", "199001547")
    ]
    out = io.StringIO()
    write_csv([entry], out)
    assert out.getvalue().splitlines()[0].startswith("site,ring,critical,")
    assert out.getvalue().endswith("\r\n")


def granting_arm() -> FakeArmReader:
    """ARM for two connected registries: one whose sync token also grants retail/*, one throttled."""
    return FakeArmReader(
        lambda resource_id: ConnectedRegistryState(
            resource_id=resource_id,
            name="granted",
            connection_state=ConnectionState.ONLINE,
            observed_at=NOW,
            token_id=f"{resource_id}/tokens/sync",
        ),
        scope=lambda token_id: SyncScope(
            token_id=token_id, token_enabled=True, repository_patterns=("inspection/*", "retail/*")
        ),
        unavailable=lambda resource_id: resource_id.endswith("/throttled"),
    )


def test_the_reports_exposure_comes_from_the_scope_drift(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    store.upsert_sites(
        [
            Site(name="plant-01", repositories=("inspection/*",), connected_registry="/subscriptions/x/granted"),
            Site(name="plant-02", repositories=("inspection/*",), connected_registry="/subscriptions/x/throttled"),
            Site(name="plant-03", repositories=("inspection/*", "ml/*")),
        ]
    )
    services = bootstrap(Settings(data_dir=tmp_path), store=store, clock=FakeClock(NOW), arm=granting_arm())
    exposures = [entry["exposure"] for entry in site_report(services, "7d")["value"]]
    assert exposures == [
        {"repositories_approved": 1, "drift": True, "over_exposed": 1, "missing": 0},
        {"repositories_approved": 1, "drift": None, "over_exposed": None, "missing": None},
        {"repositories_approved": 2, "drift": None, "over_exposed": None, "missing": None},
    ]
    services.close()


# -- the search is bounded ----------------------------------------------------------------------


def test_the_search_for_n_minus_one_stops_after_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    services = bootstrap(Settings(data_dir=tmp_path), store=store, clock=FakeClock(NOW))
    site = Site(name="plant-01", repositories=("inspection/*",))
    store.upsert_sites([site])
    releases = [make_release(pushed_at=NOW - timedelta(hours=n), tags=frozenset({f"1.{n}.0"})) for n in range(6)]
    for release in releases:
        store.create_release(release)
        store.add_site_syncs([make_row(release, site.name)])
        store.publish_release(release)
    oldest = releases[-1]
    versioned = store.get_site_sync(oldest.release_id, site.name)
    store.save_site_sync(versioned.value.moved_to(SyncState.SYNCED, None, NOW), etag=versioned.etag)

    [found] = site_rollback(services, site.name, repository=RELEASE.repository)
    assert found.ready and found.previous is not None and found.previous.release.release_id == oldest.release_id
    monkeypatch.setattr(rollback, "MAX_OLDER_RELEASES", 3)
    [bounded] = site_rollback(services, site.name, repository=RELEASE.repository)
    assert (bounded.ready, bounded.reason) == (False, RollbackReason.NO_PREVIOUS_RELEASE)
    services.close()
