"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium through
chromedriver, loads the page from a running server and shows a scripted scenario."""

from __future__ import annotations

import copy
import hashlib
import re
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from shared.cli import main as cli_main
from shared.domain.changes import transition
from shared.domain.content import synthetic_content
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.domain.windows import window_at_or_after
from shared.domain.workloads import ObservationSource, PullError, RunningContainer, SiteObservation
from shared.local.environment import DevEnvironment
from shared.services.ingest import ingest_delivery
from shared.services.rows import update_row
from shared.services.summaries import summarize_release
from shared.services.workloads import record_observation
from tests.e2e.conftest import needs_browser, wait_ready
from tests.fakes import delivery, load_event

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs_browser


def _scenario(environment: DevEnvironment) -> str:
    """One release at three in-scope sites: proven at plant-01, stale at plant-02, failed at mine-07."""
    services = environment.services
    event = load_event("eventgrid-image-pushed")
    [result] = ingest_delivery(services, delivery(event), "application/json").results
    release_id = result.release_id or ""
    now = services.clock.now()
    moves = {
        "plant-01": (SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, EvidenceSource.OCI_PROBE),
        "plant-02": (SyncState.STALE, SyncReason.WINDOW_MISSED, EvidenceSource.SCHEDULE),
        "mine-07": (SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED, EvidenceSource.ARM_LAST_SYNC),
    }
    for site, (state, reason, source) in moves.items():
        update_row(
            services.store,
            release_id,
            site,
            lambda row, s=state, r=reason, src=source: transition(row, s, r, source=src, summary="scripted", at=now),
        )
    return release_id


def test_the_matrix_shows_each_sites_state_and_the_alerts(
    dev_server: tuple[str, DevEnvironment], browser: Any, tmp_path: Path
) -> None:
    base, environment = dev_server
    release_id = _scenario(environment)
    browser.get(base + "/")
    wait_ready(browser)

    cells = {
        el.get_attribute("data-site"): el.get_attribute("data-state")
        for el in browser.find_elements("css selector", "#matrix td.cell[data-state]")
    }
    assert cells["plant-01"] == "VERIFIED" and cells["plant-02"] == "STALE" and cells["mine-07"] == "FAILED"
    assert cells["store-0001"] == "SKIPPED"
    alerts = {el.get_attribute("data-site"): el.text for el in browser.find_elements("css selector", "#alerts li")}
    assert list(alerts) == ["mine-07", "plant-02"]  # grouped per site, critical first
    assert "1 failed" in alerts["mine-07"] and "1 release stale" in alerts["plant-02"]
    tip = browser.find_element("css selector", "#matrix td.cell[data-site='plant-02']").get_attribute("title")
    assert "WINDOW_MISSED" in tip
    critical = [el.text for el in browser.find_elements("css selector", "th.site.critical")]
    assert "plant-01" in critical and "mine-07" in critical
    browser.save_screenshot(str(tmp_path / "matrix.png"))
    assert (tmp_path / "matrix.png").stat().st_size > 10_000

    summarize_release(environment.services, release_id)  # weighs it: simulated releases have stand-in layers
    browser.get(f"{base}/#/release/{release_id}")
    wait_ready(browser)
    assert browser.find_element("id", "gate").text == "failed"  # mine-07 is critical and failed
    assert re.fullmatch(r"weighs [0-9.]+ MB in 5 layers", browser.find_element("id", "release-size").text)
    assert "plant-01" in browser.find_element("id", "release-sites").text
    assert "scripted" in browser.find_element("id", "evidence").text
    browser.save_screenshot(str(tmp_path / "release.png"))


def test_filters_narrow_the_matrix_to_a_ring(dev_server: tuple[str, DevEnvironment], browser: Any) -> None:
    base, _ = dev_server
    browser.get(base + "/")
    wait_ready(browser)
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "ring-filter")).select_by_value("ring3")
    time.sleep(0.5)
    wait_ready(browser)
    sites = {el.get_attribute("data-site") for el in browser.find_elements("css selector", "#matrix td.cell")}
    assert sites and all(site.startswith("store-") for site in sites)


def test_the_site_page_shows_what_runs_there_and_the_matrix_marks_it(
    dev_server: tuple[str, DevEnvironment], browser: Any, tmp_path: Path
) -> None:
    base, environment = dev_server
    services = environment.services
    # The scenario's release (ingesting its event again changes nothing): its rows exist, moved or not.
    [result] = ingest_delivery(services, delivery(load_event("eventgrid-image-pushed")), "application/json").results
    release_id = result.release_id or ""
    row = services.store.get_site_sync(release_id, "plant-01").value
    now = services.clock.now()
    image = f"plant-01.registry.local/{row.repository}"
    record_observation(
        services,
        SiteObservation(
            site="plant-01",
            source=ObservationSource.SIMULATED,
            observed_at=now,
            containers=tuple(
                RunningContainer("apps", f"camera-{n}", "camera", f"{image}:1.4.2", row.digest, "Deployment", "camera")
                for n in range(3)
            ),
            pull_errors=(PullError(f"{image}:9.9.9", "ImagePullBackOff", "Back-off pulling image", 2, now, now),),
        ),
    )
    browser.get(f"{base}/#/site/plant-01")
    wait_ready(browser)
    running = browser.find_element("id", "site-running")
    assert running.find_element("css selector", f"tr[data-digest='{row.digest}']")
    assert release_id[:12] in running.text and "apps/camera (3)" in running.text
    assert "ImagePullBackOff" in browser.find_element("id", "site-pull-errors").text
    assert "cluster" in browser.find_element("id", "site-health").text
    browser.save_screenshot(str(tmp_path / "site.png"))

    browser.get(base + "/")
    wait_ready(browser)
    marked = {
        el.get_attribute("data-site"): el.get_attribute("data-running")
        for el in browser.find_elements("css selector", "#matrix td.cell[data-state]")
    }
    assert marked["plant-01"] == "true" and marked["plant-02"] == "false"
    browser.get(f"{base}/#/release/{release_id}")
    wait_ready(browser)
    assert "running at 1" in browser.find_element("id", "adoption").text


def _heavy_digest(at_least: int) -> str:
    """A digest whose simulated weight (shared.domain.content.synthetic_content) is at least ``at_least`` bytes."""
    for n in range(10_000):
        digest = "sha256:" + hashlib.sha256(f"heavy-{n}".encode()).hexdigest()
        if synthetic_content(digest).size_bytes >= at_least:
            return digest
    raise AssertionError("no heavy digest")  # pragma: no cover


def test_a_site_on_a_slow_link_shows_exceeds_window_in_the_api_the_cli_and_the_dashboard(
    dev_server: tuple[str, DevEnvironment], browser: Any, capsys: Any
) -> None:
    """The demo's mine-07 declares 20 Mbit/s and 1-minute windows (150 MB each): a 250 MB release misses the next."""
    base, environment = dev_server
    services = environment.services
    now = services.clock.now()
    event = copy.deepcopy(load_event("eventgrid-image-pushed"))
    event["id"] = str(uuid.uuid4())
    event["eventTime"] = event["data"]["timestamp"] = now.isoformat().replace("+00:00", "Z")
    event["data"]["target"].update(digest=_heavy_digest(250_000_000), tag="1.6.0")
    event["subject"] = "inspection/camera:1.6.0"
    [result] = ingest_delivery(services, delivery(event), "application/json").results
    release_id = result.release_id or ""
    summarize_release(services, release_id)  # weighs it and plans each site's transfer

    mine = next(
        row for row in httpx.get(f"{base}/api/releases/{release_id}").json()["sites"] if row["site"] == "mine-07"
    )
    assert mine["reason"] == "EXCEEDS_WINDOW" and mine["bytes_needed"] >= 250_000_000
    assert mine["link"] == {"bits_per_second": 20_000_000.0, "source": "declared"}
    site = next(s for s in services.catalog.sites() if s.name == "mine-07")
    next_window = window_at_or_after(site.schedule, site.sync_window, now)
    assert datetime.fromisoformat(mine["expected_ready_at"]) > next_window.closes_at  # a later window

    capsys.readouterr()
    assert cli_main(["release", release_id, "-o", "table", "--api-url", base]) == 0
    table = capsys.readouterr().out
    assert any(line.startswith("mine-07") and "EXCEEDS_WINDOW" in line for line in table.splitlines())

    browser.get(f"{base}/#/release/{release_id}")
    wait_ready(browser)
    row = browser.find_element("css selector", '#release-sites tr[data-site="mine-07"]')
    assert "EXCEEDS_WINDOW" in row.text and "does not fit" in row.find_element("css selector", "td.eta").text
    assert "at 20 Mbit/s (declared)" in row.find_element("css selector", "td.needs").text
