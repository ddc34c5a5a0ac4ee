"""The indexing test: what the Functions host would read from function_app.py (no host runs here)."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    import function_app

    # get_functions() may run only once per app object (it records names); the module fixture ensures that.
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def bindings(function: Any) -> list[dict[str, Any]]:
    return json.loads(function.get_function_json())["bindings"]  # type: ignore[no-any-return]


def test_http_surface_is_one_asgi_function_protected_by_function_keys(functions: dict[str, Any]) -> None:
    trigger = next(b for b in bindings(functions["http_app_func"]) if b["direction"] == "IN")
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == "/{*route}"
    assert {"GET", "POST", "OPTIONS"} <= set(trigger["methods"])


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
    assert set(functions) == {"http_app_func", "on_acr_event", "site_sync", "site_sync_dead_letter", "sweeper"}


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
