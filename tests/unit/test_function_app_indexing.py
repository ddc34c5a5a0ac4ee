"""The indexing test: what the Functions host would read from function_app.py (no host runs here)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    import function_app

    # get_functions() may run only once per app object (it records names); the module fixture ensures that.
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def bindings(function: Any) -> list[dict[str, Any]]:
    return json.loads(function.get_function_json())["bindings"]  # type: ignore[no-any-return]


HOST_PATHS = ("/admin/host/status", "/admin/functions/on_acr_event", "/runtime/webhooks/eventgrid", "/", "/x")


def http_routes(functions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each HTTP function's trigger binding, by function name."""
    found = {}
    for name, function in functions.items():
        trigger = next(b for b in bindings(function) if b["direction"] == "IN")
        if trigger["type"] == "httpTrigger":
            found[name] = trigger
    return found


def matches(template: str, path: str) -> bool:
    """Whether a Functions route template (routePrefix "") matches a request path: literal segments,
    ``{name}`` one segment, ``{*name}`` the rest (possibly empty)."""
    pattern = ""
    for segment in template.strip("/").split("/"):
        if segment.startswith("{*"):
            pattern += "(?:/.*)?"
        elif segment.startswith("{"):
            pattern += "/[^/]+"
        else:
            pattern += "/" + re.escape(segment)
    return re.fullmatch(pattern, path.rstrip("/") or "/") is not None


def test_every_http_route_starts_with_a_literal_segment_the_host_does_not_own(functions: dict[str, Any]) -> None:
    for name, trigger in http_routes(functions).items():
        first = trigger["route"].strip("/").split("/")[0]
        assert first and not first.startswith("{"), f"{name}: a leading parameter or catch-all shadows host routes"
        assert first.lower() not in {"admin", "runtime"}, name
        for path in HOST_PATHS:
            assert not matches(trigger["route"], path), f"{name} ({trigger['route']}) would answer {path}"


def test_every_api_and_dashboard_route_of_the_app_is_reachable_in_azure(functions: dict[str, Any]) -> None:
    from orchestrations.api import create_app
    from tests.unit.orchestrations.test_api_package import routes

    templates = [trigger["route"] for trigger in http_routes(functions).values()]
    served = {path for _, path in routes(create_app()) if path.startswith(("/api/", "/dashboard"))}
    assert served
    for path in served:
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        assert any(matches(template, concrete) for template in templates), path


def test_the_api_needs_a_function_key_and_only_public_pages_do_not(functions: dict[str, Any]) -> None:
    routes = {trigger["route"]: trigger for trigger in http_routes(functions).values()}
    assert routes["api/{*path}"]["authLevel"] == "FUNCTION"
    assert {"GET", "POST", "OPTIONS"} <= set(routes["api/{*path}"]["methods"])
    anonymous = {route for route, trigger in routes.items() if trigger["authLevel"] == "ANONYMOUS"}
    # Site reports carry the site's report token, which the app checks: no site holds a function key.
    reports = "api/sites/{site}/reports"
    assert anonymous == {"api/healthz", "api/openapi.json", "api/docs", "dashboard/{*page}", reports}
    assert all(set(routes[route]["methods"]) <= {"GET", "HEAD"} for route in anonymous - {reports})
    assert routes[reports]["methods"] == ["POST"]


def test_every_function_is_indexed_from_function_app_py(functions: dict[str, Any]) -> None:
    for function in functions.values():
        assert json.loads(function.get_function_json())["scriptFile"] == "function_app.py"


def test_host_json_routes_without_a_prefix_so_paths_match_the_local_runtime() -> None:
    from pathlib import Path

    host = json.loads(Path("host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"


def test_acr_events_arrive_through_an_event_grid_trigger_named_for_the_webhook(functions: dict[str, Any]) -> None:
    [trigger] = bindings(functions["on_acr_event"])
    assert trigger == {"direction": "IN", "type": "eventGridTrigger", "name": "event"}


def test_the_function_set_is_exactly_what_the_host_should_index(functions: dict[str, Any]) -> None:
    assert set(functions) == {
        "http_api",
        "http_health",
        "http_openapi",
        "http_docs",
        "http_dashboard",
        "http_site_reports",
        "on_acr_event",
        "site_sync",
        "site_sync_dead_letter",
        "sweeper",
    }


def test_site_checks_come_from_the_session_enabled_jobs_queue(functions: dict[str, Any]) -> None:
    [trigger] = bindings(functions["site_sync"])
    assert trigger["type"] == "serviceBusTrigger"
    assert (
        trigger["connection"] == "ServiceBusConnection"
    )  # identity-based: ServiceBusConnection__fullyQualifiedNamespace
    assert trigger["queueName"] == "%SYNC_QUEUE%"
    assert trigger["isSessionsEnabled"] is True  # one check per site at a time


def test_dead_letters_are_read_without_sessions(functions: dict[str, Any]) -> None:
    [trigger] = bindings(functions["site_sync_dead_letter"])
    assert trigger["type"] == "serviceBusTrigger"
    assert trigger["queueName"] == "%SYNC_QUEUE%/$deadletterqueue"
    assert "isSessionsEnabled" not in trigger or trigger["isSessionsEnabled"] is False


def test_the_sweeper_runs_every_five_minutes_with_no_retry_policy(functions: dict[str, Any]) -> None:
    [trigger] = bindings(functions["sweeper"])
    assert trigger["type"] == "timerTrigger" and trigger["schedule"] == "0 */5 * * * *"
    assert not functions["sweeper"].get_settings_dict("retry_policy")  # a missed sweep is redone by the next one


def test_every_setting_a_binding_names_is_read_by_the_code(functions: dict[str, Any]) -> None:
    import re

    from shared import config

    named = {
        m for f in functions.values() for b in bindings(f) for m in re.findall(r"%([A-Za-z0-9_]+)%", json.dumps(b))
    }
    assert named == {config.SYNC_QUEUE}
