"""The HTTP surface as a package: the app serves the same routes it served as one module
(tests/fixtures/api-routes.json was taken from it), the dev routes exist only when the local runtime asks
for them at creation, and every documented operation has a stable, explicit id."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from orchestrations.api import create_app
from orchestrations.api.dev import DevTools
from shared.domain.gate import FailureCode
from tests.fakes import FIXTURES

BEFORE = json.loads((FIXTURES / "api-routes.json").read_text())
DEV_ROUTES = {
    ("GET", "/api/dev/sites"),
    ("POST", "/api/dev/sites/{site}/{state}"),
    ("POST", "/api/dev/sites/{site}/pull-errors"),
    ("POST", "/api/dev/registry-notifications"),
}


def routes(app: FastAPI) -> set[tuple[str, str]]:
    def walk(entries: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
        for entry in entries:
            if hasattr(entry, "original_router"):  # an included router
                yield from walk(entry.original_router.routes, prefix + entry.include_context.prefix)
            else:
                for method in sorted(getattr(entry, "methods", None) or ["*"]):
                    yield method, prefix + entry.path

    return set(walk(app.routes))


def documented(app: FastAPI) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}


# The dashboard's own path (the one the Azure host routes to it) and its script and style sheet, which left
# the page so it can forbid inline script.
DASHBOARD_FILES = {
    ("GET", "/dashboard"),
    ("GET", "/dashboard/"),
    ("GET", "/dashboard/app.js"),
    ("GET", "/dashboard/app.css"),
}


def test_the_app_serves_the_routes_it_always_served() -> None:
    app = create_app()
    assert routes(app) == {tuple(route) for route in BEFORE["routes"]} | DASHBOARD_FILES
    assert documented(app) == {tuple(route) for route in BEFORE["documented"]}


def test_the_dev_routes_exist_only_when_the_local_runtime_asks_at_creation() -> None:
    assert not routes(create_app()) & DEV_ROUTES
    with_dev = create_app(dev_tools=DevTools())
    assert routes(with_dev) - routes(create_app()) == DEV_ROUTES
    assert not routes(create_app()) & DEV_ROUTES  # another app is not changed by it


def test_every_documented_operation_has_an_explicit_camel_case_id() -> None:
    ids = [op["operationId"] for ops in create_app().openapi()["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", operation_id) for operation_id in ids), ids


def test_the_documented_gate_reasons_are_every_reason_the_gate_gives() -> None:
    # The OpenAPI enum is what a pipeline's generated client accepts: a code the gate gives and the
    # document omits breaks that client on the first release that hits it.
    documented = create_app().openapi()["components"]["schemas"]["GateReasonModel"]["properties"]["code"]["enum"]
    assert set(documented) == {code.value for code in FailureCode}
