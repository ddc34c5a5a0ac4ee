"""The HTTP surface as one ASGI app: served by ``AsgiFunctionApp`` in Azure and by uvicorn locally.

host.json sets ``routePrefix`` to "" so the app sees the same paths in both places (``/api/...``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from orchestrations import acr_events
from orchestrations.problems import install_problem_handlers
from shared.bootstrap import get_services


def create_app() -> FastAPI:
    app = FastAPI(
        title="acrsync",
        summary="Which digest is at which edge site, since when, and what proves it.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )

    install_problem_handlers(app)
    app.include_router(acr_events.router)

    @app.get("/api/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness and the backends this process uses (never secrets)."""
        return {"status": "ok", "backends": get_services().settings.describe()}

    return app


asgi_app = create_app()
