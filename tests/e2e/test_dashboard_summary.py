"""The dashboard's summary page (`#/summary`) in a real browser: Debian's headless Chromium, driven by
Selenium through chromedriver, shows the per-site report of a scripted scenario."""

from __future__ import annotations

import copy
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.domain.changes import transition
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.local.environment import DevEnvironment
from shared.services.ingest import ingest_delivery
from shared.services.rows import update_row
from tests.e2e.conftest import needs_browser, wait_ready
from tests.fakes import delivery, load_event

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs_browser


def _scenario(environment: DevEnvironment) -> None:
    """One release pushed a few minutes ago: at plant-01 after 2 minutes, late (stale) at plant-02."""
    services = environment.services
    pushed = services.clock.now() - timedelta(minutes=10)
    event = copy.deepcopy(load_event("eventgrid-image-pushed"))
    event["id"] = str(uuid.uuid4())
    event["eventTime"] = pushed.isoformat()
    [result] = ingest_delivery(services, delivery(event), "application/json").results
    release_id = result.release_id or ""
    moves = {
        "plant-01": (SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, EvidenceSource.OCI_PROBE),
        "plant-02": (SyncState.STALE, SyncReason.WINDOW_MISSED, EvidenceSource.SCHEDULE),
    }
    for site, (state, reason, source) in moves.items():
        update_row(
            services.store,
            release_id,
            site,
            lambda row, s=state, r=reason, src=source: transition(
                row, s, r, source=src, summary="scripted", at=pushed + timedelta(minutes=2)
            ),
        )


def _cell(browser: Any, site: str, column: str) -> str:
    return str(browser.find_element("css selector", f"#summary tr[data-site='{site}'] td[data-col='{column}']").text)


def test_the_summary_page_shows_the_report_per_site(
    dev_server: tuple[str, DevEnvironment], browser: Any, tmp_path: Path
) -> None:
    base, environment = dev_server
    _scenario(environment)
    browser.get(base + "/")
    wait_ready(browser)
    browser.find_element("id", "summary-link").click()
    deadline = time.monotonic() + 15
    while not browser.find_elements("css selector", "#summary tr[data-site]"):
        assert time.monotonic() < deadline, "the summary did not render"
        time.sleep(0.1)
    wait_ready(browser)
    assert browser.execute_script("return location.hash") == "#/summary"

    sites = [el.get_attribute("data-site") for el in browser.find_elements("css selector", "#summary tr[data-site]")]
    assert sites == sorted(sites) and {"plant-01", "plant-02", "mine-07", "store-0001"} <= set(sites)
    assert (_cell(browser, "plant-01", "received"), _cell(browser, "plant-01", "ready")) == ("1", "1")
    assert _cell(browser, "plant-01", "lag-p50") == "2.0 min" == _cell(browser, "plant-01", "lag-p95")
    assert (_cell(browser, "plant-02", "windows-missed"), _cell(browser, "plant-02", "stale-incidents")) == ("1", "1")
    assert _cell(browser, "plant-02", "lag-p50") == "—"
    assert _cell(browser, "store-0001", "received") == "0"  # out of scope for inspection/camera
    assert "Summary, last 30d" in browser.find_element("id", "view").text
    browser.save_screenshot(str(tmp_path / "summary.png"))
    assert (tmp_path / "summary.png").stat().st_size > 10_000

    browser.get(base + "/#/summary/7d")
    deadline = time.monotonic() + 15
    while "Summary, last 7d" not in browser.find_element("id", "view").text:
        assert time.monotonic() < deadline, "the 7-day summary did not render"
        time.sleep(0.1)
