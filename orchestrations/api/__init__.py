"""The HTTP surface as one ASGI app: served by the HTTP triggers of :mod:`orchestrations.http` in Azure and
by uvicorn locally.

host.json sets ``routePrefix`` to "" so the app sees the same paths in both places (``/api/...``).

One module per resource, each a router of thin synchronous handlers (FastAPI runs them in its threadpool):
decode and validate, one service call, map the answer. Shared parameter types live in
:mod:`orchestrations.api.params`, the representations in :mod:`orchestrations.api.models`. Conventions:
every error is ``application/problem+json`` with a stable ``code``; reads carry a strong ``ETag`` of their
JSON and honour ``If-None-Match`` (304); listings page with ``value``/``nextLink``; a pending readiness gate
answers 202 with ``Retry-After`` and ``Location``; unknown query parameters are refused (``code``, the Azure
function key, excepted).

:func:`create_app` lists every router; the local runtime's dev router is included when the caller passes
:class:`~orchestrations.api.dev.DevTools`, at creation, and nothing changes the app afterwards.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from orchestrations.api import (
    dashboard,
    dev,
    events,
    evidence,
    gate,
    governance,
    health,
    ingress,
    releases,
    report,
    sites,
    views,
)
from orchestrations.api.auth import authorize
from orchestrations.api.openapi import openapi_document
from orchestrations.api.params import reject_unknown_query
from orchestrations.api.problems import install_problem_handlers

API_VERSION = "1.0.0"


def create_app(*, dev_tools: dev.DevTools | None = None) -> FastAPI:
    """The ASGI app; with ``dev_tools`` (the local runtime only) it also has the ``/api/dev`` routes."""
    app = FastAPI(
        title="acrsync",
        version=API_VERSION,
        summary="Which digest is at which edge site, since when, and what proves it.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # Every route passes the credential check; authorize() itself knows which paths are public.
        dependencies=[Depends(authorize)],
    )
    install_problem_handlers(app)
    checked = [Depends(reject_unknown_query)]
    app.include_router(ingress.router)
    app.include_router(sites.router, dependencies=checked)
    app.include_router(governance.router, dependencies=checked)
    app.include_router(releases.router, dependencies=checked)
    app.include_router(gate.router, dependencies=checked)
    app.include_router(evidence.router, dependencies=checked)
    app.include_router(events.router, dependencies=checked)
    app.include_router(report.router, dependencies=checked)
    app.include_router(views.router, dependencies=checked)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    if dev_tools is not None:
        app.state.dev_tools = dev_tools
        app.include_router(dev.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
