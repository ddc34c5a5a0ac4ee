"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium through
chromedriver, loads the page from a running server and shows a scripted scenario."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
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


def _wait_ready(browser: Any) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if browser.execute_script("return document.body.dataset.ready === 'true'"):
            return
        time.sleep(0.1)
    raise AssertionError("the dashboard did not render: " + browser.find_element("id", "view").text)


def test_the_matrix_shows_each_sites_state_and_the_alerts(
    server: tuple[str, DevEnvironment], browser: Any, tmp_path: Path
) -> None:
    base, environment = server
    release_id = _scenario(environment)
    browser.get(base + "/")
    _wait_ready(browser)

    cells = {
        el.get_attribute("data-site"): el.get_attribute("data-state")
        for el in browser.find_elements("css selector", "#matrix td.cell[data-state]")
    }
    assert cells["plant-01"] == "VERIFIED" and cells["plant-02"] == "STALE" and cells["mine-07"] == "FAILED"
    assert cells["store-0001"] == "SKIPPED"
    alerts = browser.find_element("id", "alerts").text
    assert "Stale: plant-02" in alerts and "Failed: mine-07" in alerts
    tip = browser.find_element("css selector", "#matrix td.cell[data-site='plant-02']").get_attribute("title")
    assert "WINDOW_MISSED" in tip
    critical = [el.text for el in browser.find_elements("css selector", "th.site.critical")]
    assert "plant-01" in critical and "mine-07" in critical
    browser.save_screenshot(str(tmp_path / "matrix.png"))
    assert (tmp_path / "matrix.png").stat().st_size > 10_000

    browser.get(f"{base}/#/release/{release_id}")
    _wait_ready(browser)
    assert browser.find_element("id", "gate").text == "failed"  # mine-07 is critical and failed
    assert "plant-01" in browser.find_element("id", "release-sites").text
    assert "scripted" in browser.find_element("id", "evidence").text
    browser.save_screenshot(str(tmp_path / "release.png"))


def test_filters_narrow_the_matrix_to_a_ring(server: tuple[str, DevEnvironment], browser: Any) -> None:
    base, _ = server
    browser.get(base + "/")
    _wait_ready(browser)
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "ring-filter")).select_by_value("ring3")
    time.sleep(0.5)
    _wait_ready(browser)
    sites = {el.get_attribute("data-site") for el in browser.find_elements("css selector", "#matrix td.cell")}
    assert sites and all(site.startswith("store-") for site in sites)
