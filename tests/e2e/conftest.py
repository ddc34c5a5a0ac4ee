"""Fixtures for the browser tests: the dev environment served over HTTP, and headless Chromium."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrations.api import create_app
from orchestrations.api.dev import DevTools
from shared.local.environment import DevEnvironment, DevOptions
from tests.support.server import serve

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Skipped on a machine without a browser, unless the run requires one (CI sets ACRSYNC_REQUIRE_BROWSER).
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("ACRSYNC_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DevEnvironment]]:
    """`acrsync dev` with the demo sites, served over HTTP; the tests move rows themselves."""
    environment = DevEnvironment(
        DevOptions(data_dir=tmp_path_factory.mktemp("dev"), sites_file=ROOT / "sites.yaml"), environ={}
    )
    environment.load_sites()
    app = create_app(dev_tools=DevTools(sites=environment.simulation, parent=environment.registries))
    environment.start(runtime=False)
    try:
        with serve(app) as base_url:
            yield base_url, environment
    finally:
        environment.stop()


@pytest.fixture(scope="session")
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


def wait_ready(browser: Any) -> None:
    """Until the page has rendered its current view (the page sets body[data-ready])."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if browser.execute_script("return document.body.dataset.ready === 'true'"):
            return
        time.sleep(0.1)
    raise AssertionError("the dashboard did not render: " + browser.find_element("id", "view").text)
