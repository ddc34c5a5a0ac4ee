"""The local runtime's HTTP surface against a hostile web page and a curious caller: no cross-site state
changes, no file-system paths in health, and a dashboard that runs only its own script."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from orchestrations.api.dev import DevTools
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap, use_services
from shared.config import Settings
from shared.domain.model import Site


class RecordingSwitch:
    """The sites' switch, remembering what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def set_online(self, site: str, online: bool) -> None:
        self.calls.append((site, online))

    def is_online(self, site: str) -> bool:
        return True


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[RecordingSwitch]:
    store = SqliteStateStore(tmp_path / "s.db")
    store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",))])
    services = bootstrap(Settings(data_dir=tmp_path), store=store)
    use_services(services)
    try:
        yield RecordingSwitch()
    finally:
        use_services(None)
        services.close()


@pytest.fixture
def client(switch: RecordingSwitch) -> TestClient:
    return TestClient(create_app(dev_tools=DevTools(sites=switch)), base_url="http://127.0.0.1:7071")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port or subdomain of the same site is another origin
        {"Origin": "https://evil.example"},
        {"Origin": "http://127.0.0.1:8000"},
        {"Origin": "null"},
    ],
)
def test_a_page_on_another_site_cannot_take_a_site_offline(
    client: TestClient, switch: RecordingSwitch, headers: dict[str, str]
) -> None:
    answer = client.post("/api/dev/sites/plant-01/offline", headers=headers)
    assert answer.status_code == 403 and answer.json()["code"] == "CROSS_SITE_REQUEST"
    assert switch.calls == []  # nothing changed


def test_the_cli_and_the_dashboard_itself_still_can(client: TestClient, switch: RecordingSwitch) -> None:
    assert client.post("/api/dev/sites/plant-01/offline").status_code == 200  # no browser headers: a program
    same = {"Origin": "http://127.0.0.1:7071", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/dev/sites/plant-01/online", headers=same).status_code == 200
    assert switch.calls == [("plant-01", False), ("plant-01", True)]


def test_cross_site_reads_are_left_to_the_browsers_same_origin_policy(client: TestClient) -> None:
    # A read changes nothing, and without CORS headers the page cannot see the answer.
    answer = client.get("/api/sites", headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_health_shows_no_file_system_paths(client: TestClient, tmp_path: Path) -> None:
    body = client.get("/api/healthz").text
    assert str(tmp_path) not in body and ".db" not in body and "/" not in body.replace("\\/", "")


@pytest.mark.parametrize("path", ["/", "/dashboard", "/dashboard/app.js", "/dashboard/app.css"])
def test_the_dashboard_runs_only_its_own_script_and_cannot_be_framed(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in policy
    assert directives["frame-ancestors"] == "'none'"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"  # the ?code= key never leaves in a Referer


def test_the_dashboard_page_has_no_inline_script_or_style(client: TestClient) -> None:
    page = client.get("/dashboard").text
    assert "<script>" not in page and "<style" not in page and "style=" not in page
    assert '<script src="/dashboard/app.js"></script>' in page
