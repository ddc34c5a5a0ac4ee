"""The dashboard at fleet size in a real browser (Debian's headless Chromium through chromedriver): 200 sites
in four rings × 50 releases, 20 sites offline and stale. The first 1440×900 screen shows the matrix, a
refresh is one request (a 304 when nothing changed), focus survives it, axe-core finds no serious or
critical violation on any page, and when the API goes away the last data stays under a banner.

Screenshots of each page are kept under ``test-artifacts/dashboard/`` (``ACRSYNC_TEST_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrations.api import create_app
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.annotations import AnnotationChange, Annotations, RunbookField
from shared.domain.content import Blob, ReleaseContent
from shared.domain.links import LinkRate, RateSource, Transfer
from shared.domain.model import Release, Site, SiteSync
from shared.domain.states import SyncReason, SyncState
from tests.builders import make_release, make_row
from tests.e2e.conftest import needs_browser, wait_ready
from tests.support.server import serve

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ACRSYNC_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "dashboard"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
pytestmark = needs_browser

# As the sites file lists them; alphabetical order would put broad first.
RINGS = [("canary", 10), ("early", 40), ("broad", 70), ("late", 80)]
RELEASES = 50
OFFLINE_SITES = 20
SLOW_SITE = "late-002"
APPROVAL = "https://dev.azure.com/contoso/edge/_releaseProgress?releaseId=4711"
NOW = datetime.now(UTC).replace(microsecond=0)


def _sites() -> list[Site]:
    sites, position = [], 0
    for ring, count in RINGS:
        for i in range(count):
            name = f"{ring}-{i:03d}"
            sites.append(Site(name=name, ring=ring, critical=i == 0, repositories=("inspection/*",), position=position))
            position += 1
    return sites


def _rows(release: Release, index: int, sites: list[Site], offline: set[str]) -> list[SiteSync]:
    """Older releases verified everywhere; the newest ten stale at the offline sites; the newest three
    still on their way at the late ring; one failure at a critical site."""
    rows = []
    for site in sites:
        row = make_row(release, site.name, state=SyncState.VERIFIED)
        row = replace(row, reason=SyncReason.MANIFEST_PRESENT, verified_at=release.pushed_at + timedelta(minutes=9))
        if index >= RELEASES - 10 and site.name in offline:
            row = replace(
                row,
                state=SyncState.STALE,
                reason=SyncReason.SITE_SILENT,
                verified_at=None,
                offline_since=NOW - timedelta(hours=3, minutes=12),
            )
        elif index >= RELEASES - 3 and site.ring == "late":
            row = replace(
                row,
                state=SyncState.WAITING_FOR_WINDOW,
                reason=SyncReason.WINDOW_CLOSED,
                verified_at=None,
                expected_ready_at=NOW + timedelta(hours=5),
            )
        if index == RELEASES - 1 and site.name == SLOW_SITE and row.state is SyncState.WAITING_FOR_WINDOW:
            # 1.8 GB over 2 Mbit/s: more than the next window carries, so the estimate is a day later.
            row = replace(
                row,
                reason=SyncReason.EXCEEDS_WINDOW,
                expected_ready_at=NOW + timedelta(hours=29),
                transfer=Transfer((1_200_000_000, 600_000_000), LinkRate(2_000_000, RateSource.DECLARED)),
            )
        if index == RELEASES - 1 and site.name == "broad-000":
            row = replace(row, state=SyncState.FAILED, reason=SyncReason.SYNC_TOKEN_EXPIRED, verified_at=None)
        rows.append(row)
    return rows


class CountingApp:
    """The ASGI app, counting the API requests it answers (path, status) and able to play dead."""

    def __init__(self, app: Any) -> None:
        self.app, self.answers, self.down = app, Counter[tuple[str, int]](), False
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                with self._lock:
                    self.answers[(scope["path"], message["status"])] += 1
            await send(message)

        await self.app(scope, receive, counted)

    def reset(self) -> None:
        with self._lock:
            self.answers.clear()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CountingApp, Services, list[str]]]:
    data = tmp_path_factory.mktemp("fleet")
    store = SqliteStateStore(data / "state.db")
    sites = _sites()
    store.upsert_sites(sites)
    offline = {site.name for site in sites if site.ring in ("broad", "late")}
    offline = set(sorted(offline)[:: max(1, len(offline) // OFFLINE_SITES)][:OFFLINE_SITES])
    ids = []
    for index in range(RELEASES):
        release = make_release(
            tags=frozenset({f"1.{index}.0"}), pushed_at=NOW - timedelta(hours=2 * (RELEASES - index))
        )
        if index == RELEASES - 1:  # the newest carries its context
            change = AnnotationChange(NOW - timedelta(minutes=30), "release-manager@contoso.example", {})
            fields = {RunbookField.OWNER: "vision-team", RunbookField.APPROVAL_URL: APPROVAL}
            image = {"source": "https://github.com/contoso/vision", "version": f"1.{index}.0"}
            release = replace(
                release,
                annotations=Annotations(fields, (change,)),
                content=ReleaseContent((Blob(release.digest, 1_800_000_000),), ("linux/amd64",), 1, image),
            )
        store.create_release(release)
        store.add_site_syncs(_rows(release, index, sites, offline))
        store.publish_release(release)
        ids.append(release.release_id)
    queue = SqliteJobQueue(data / "state.db")
    services = bootstrap(Settings(data_dir=data), store=store, queue=queue)
    use_services(services)
    app = CountingApp(create_app())
    try:
        with serve(app) as base:
            yield base, app, services, ids
    finally:
        use_services(None)
        services.close()


@pytest.fixture
def screen(browser: Any) -> Iterator[Any]:
    """The browser at exactly 1440×900 CSS pixels."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    )
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _open(browser: Any, url: str) -> None:
    browser.get(url)
    wait_ready(browser)


def _shot(browser: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _refresh(browser: Any, *, force: bool = False) -> None:
    """One refresh cycle, as the page's timer runs it."""
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; render({ force: arguments[0] }).then(() => done(true));", force
    )


def _axe(browser: Any) -> list[dict[str, Any]]:
    if not browser.execute_script("return typeof axe !== 'undefined'"):
        browser.execute_script(AXE.read_text())
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations.map("
        "  v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target) }))));"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def test_the_first_screen_shows_the_matrix_with_rings_in_file_order(
    fleet: tuple[str, CountingApp, Services, list[str]], screen: Any
) -> None:
    base, _, _, _ = fleet
    _open(screen, base + "/")
    rings = [
        el.get_attribute("data-ring")
        for el in screen.find_elements("css selector", "#matrix tbody tr:first-child td.rollup")
    ]
    assert rings == ["canary", "early", "broad", "late"]  # 200 sites: collapsed to one roll-up per ring
    newest = screen.find_element("css selector", "#matrix tbody tr:first-child td.rollup[data-ring='broad']")
    # Ten of its sites are offline (broad-000 among them, which also failed): stale and failed counted apart.
    assert newest.text == "✕ 60/70, 9 stale, 1 failed"
    assert (
        "stale" in screen.find_element("css selector", "#matrix tbody tr:first-child td.rollup[data-ring='late']").text
    )

    height = screen.execute_script("return window.innerHeight")
    header = screen.find_element("css selector", "#matrix thead").rect
    visible = [
        row
        for row in screen.find_elements("css selector", "#matrix tbody tr")
        if row.rect["y"] + row.rect["height"] <= height
    ]
    assert height == 900 and header["y"] < height and len(visible) >= 10
    alerts = screen.find_elements("css selector", "#alerts li")
    assert len(alerts) == OFFLINE_SITES  # one per site, not one per site and release
    assert "offline since" in alerts[1].text and "10 releases stale" in alerts[1].text
    assert alerts[0].get_attribute("data-site") == "broad-000"  # the critical site comes first
    assert "20 releases shown" in screen.find_element("id", "release-count").text
    _shot(screen, "matrix-200-sites")


def test_a_ring_expands_to_its_sites_with_sticky_headers_and_the_state_in_the_url(
    fleet: tuple[str, CountingApp, Services, list[str]], screen: Any
) -> None:
    base, _, _, _ = fleet
    _open(screen, base + "/")
    screen.find_element("css selector", "button.ring-toggle[data-key='ring-late']").click()
    wait_ready(screen)
    assert "expand=late" in screen.current_url
    late = screen.find_elements("css selector", "#matrix thead th.site")
    assert len(late) == 80 and late[0].get_attribute("data-site") == "late-000"
    offline = [th for th in late if "offline" in (th.get_attribute("class") or "")]
    assert offline and "offline since" in offline[0].get_attribute("title")
    cells = screen.find_elements("css selector", "#matrix tbody tr:first-child td.cell")
    assert {c.get_attribute("data-state") for c in cells} >= {"WAITING_FOR_WINDOW", "STALE"}
    assert all(c.text for c in cells)  # a glyph in every cell, not colour alone

    scroller = screen.find_element("id", "matrix-scroll")
    screen.execute_script("arguments[0].scrollLeft = 900;", scroller)
    assert screen.execute_script("return arguments[0].scrollLeft", scroller) == 900
    header_top = screen.execute_script(
        "const s = arguments[0]; return document.querySelector('#matrix thead th.site').getBoundingClientRect().top"
        " - s.getBoundingClientRect().top;",
        scroller,
    )
    first_column = screen.execute_script(
        "return document.querySelector('#matrix tbody th.release').getBoundingClientRect().left"
        " - arguments[0].getBoundingClientRect().left;",
        scroller,
    )
    assert header_top < 40 and first_column < 5  # the release column stays at the left edge of the scrolled box
    _shot(screen, "matrix-ring-expanded")
    _refresh(screen, force=True)
    assert screen.execute_script("return document.getElementById('matrix-scroll').scrollLeft") == 900

    _open(screen, base + "/#/?ring=early")
    assert screen.find_element("id", "ring-filter").get_attribute("value") == "early"
    names = {c.get_attribute("data-site") for c in screen.find_elements("css selector", "#matrix td.cell")}
    assert len(names) == 40 and all(name.startswith("early-") for name in names)


def test_a_refresh_is_one_request_and_keeps_focus(
    fleet: tuple[str, CountingApp, Services, list[str]], screen: Any
) -> None:
    base, app, _, ids = fleet
    for url in (base + "/", f"{base}/#/release/{ids[-1]}", f"{base}/#/site/late-001", base + "/#/summary"):
        _open(screen, url)
        app.reset()
        _refresh(screen)
        assert sum(app.answers.values()) <= 2, app.answers
        assert set(status for _, status in app.answers) == {304} or url.endswith("summary"), app.answers

    _open(screen, base + "/")
    link = screen.find_element("css selector", f"a[data-key='release-{ids[-2]}']")
    screen.execute_script("arguments[0].focus()", link)
    _refresh(screen, force=True)  # a re-render, as when data changed
    assert screen.execute_script("return document.activeElement.dataset.key") == f"release-{ids[-2]}"

    older = screen.find_element("id", "older")
    older.click()
    wait_ready(screen)
    assert "page=" in screen.current_url
    assert "(an older page)" in screen.find_element("id", "release-count").text


def test_the_release_page_leads_with_the_gate(fleet: tuple[str, CountingApp, Services, list[str]], screen: Any) -> None:
    base, _, _, ids = fleet
    _open(screen, f"{base}/#/release/{ids[-1]}")
    assert screen.find_element("id", "gate").text == "failed"  # broad-000 is critical and failed
    assert screen.find_element("id", "release-size").text == "weighs 1.8 GB in 1 layer"
    context = screen.find_element("id", "release-context")
    assert "vision-team" in context.text and "annotated by release-manager@contoso.example" in context.text
    assert context.find_element("link text", APPROVAL).get_attribute("href") == APPROVAL
    assert "broad-000" in screen.find_element("id", "gate-blocked").text
    gate_y = screen.find_element("id", "gate").rect["y"]
    assert gate_y < screen.find_element("id", "release-sites").rect["y"]
    etas = {
        row.get_attribute("data-site"): row.find_element("css selector", "td.eta").text
        for row in screen.find_elements("css selector", "#release-sites tbody tr")
    }
    stale = next(site for site, text in etas.items() if "offline since" in text)
    assert "ETA unknown" in etas[stale]
    assert "in 5 hours" in etas["late-001"] or "offline" in etas["late-001"]
    slow = screen.find_element("css selector", f'#release-sites tr[data-site="{SLOW_SITE}"]')
    assert "EXCEEDS_WINDOW" in slow.text and "does not fit" in slow.find_element("css selector", "td.eta").text
    assert slow.find_element("css selector", "td.needs").text == "1.8 GB at 2 Mbit/s (declared)"
    _shot(screen, "release-200-sites")


@pytest.mark.parametrize("page", ["", "#/release/{newest}", "#/site/late-001", "#/summary"])
def test_axe_finds_no_serious_or_critical_violation(
    fleet: tuple[str, CountingApp, Services, list[str]], screen: Any, page: str
) -> None:
    base, _, _, ids = fleet
    _open(screen, f"{base}/{page.format(newest=ids[-1])}")
    assert _axe(screen) == []
    if page == "":  # axe does look: a planted unlabelled control is a critical violation
        screen.execute_script("document.getElementById('view').append(document.createElement('select'))")
        assert [v["id"] for v in _axe(screen)] == ["select-name"]
    if page == "#/summary":
        _shot(screen, "summary-200-sites")
    if page.startswith("#/site"):
        _shot(screen, "site")


def test_when_the_api_fails_the_last_data_stays_under_a_banner(
    fleet: tuple[str, CountingApp, Services, list[str]], screen: Any
) -> None:
    base, app, _, _ = fleet
    _open(screen, base + "/")
    rows = len(screen.find_elements("css selector", "#matrix tbody tr"))
    original = app.app

    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ConnectionResetError("the API went away")

    app.app = broken
    try:
        _refresh(screen)
    finally:
        app.app = original
    banner = screen.find_element("id", "connection")
    assert banner.is_displayed() and "showing the data of" in banner.text
    assert len(screen.find_elements("css selector", "#matrix tbody tr")) == rows  # nothing replaced
    assert "TypeError" not in screen.find_element("id", "view").text
    _shot(screen, "connection-lost")
    _refresh(screen)
    assert not screen.find_element("id", "connection").is_displayed()
