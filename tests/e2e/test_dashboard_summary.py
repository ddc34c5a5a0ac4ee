"""The dashboard's summary page (`#/summary`) in a real browser: Debian's headless Chromium, driven by
Selenium through chromedriver, shows the per-site report of a scripted scenario."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from orchestrations import dev_api
from orchestrations.http_api import asgi_app
from shared.devmode import DevEnvironment, DevOptions
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.services.ingest import ingest_delivery
from shared.services.rows import transition, update_row
from tests.fakes import delivery, load_event

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Skipped on a machine without a browser, unless the run requires one (CI sets ACRSYNC_REQUIRE_BROWSER).
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("ACRSYNC_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DevEnvironment]]:
    environment = DevEnvironment(
        DevOptions(data_dir=tmp_path_factory.mktemp("dev"), sites_file=ROOT / "sites.yaml"), environ={}
    )
    environment.load_sites()
    dev_api.install(asgi_app, environment.simulation)
    environment.start()
    environment.runtime.stop()  # the scenario below moves rows itself; no background checks
    port = _free_port()
    web = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not web.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", environment
    web.should_exit = True
    thread.join(10)
    environment.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or ""), options=options)
    yield driver
    driver.quit()


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


def _wait_ready(browser: Any) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if browser.execute_script("return document.body.dataset.ready === 'true'"):
            return
        time.sleep(0.1)
    raise AssertionError("the dashboard did not render: " + browser.find_element("id", "view").text)


def _cell(browser: Any, site: str, column: str) -> str:
    return str(browser.find_element("css selector", f"#summary tr[data-site='{site}'] td[data-col='{column}']").text)


def test_the_summary_page_shows_the_report_per_site(
    server: tuple[str, DevEnvironment], browser: Any, tmp_path: Path
) -> None:
    base, environment = server
    _scenario(environment)
    browser.get(base + "/")
    _wait_ready(browser)
    browser.find_element("id", "summary-link").click()
    deadline = time.monotonic() + 15
    while not browser.find_elements("css selector", "#summary tr[data-site]"):
        assert time.monotonic() < deadline, "the summary did not render"
        time.sleep(0.1)
    _wait_ready(browser)
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
