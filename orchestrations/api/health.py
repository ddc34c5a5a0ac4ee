"""Liveness: ``GET /api/healthz`` (public; never secrets)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from shared.bootstrap import get_services

router = APIRouter(prefix="/api")


@router.get("/healthz", tags=["health"], operation_id="healthz")
def healthz() -> dict[str, Any]:
    """Liveness, the parent registry this instance serves (`null`: whichever the events name; events
    for another are refused when it is set) and the backends this process uses (never secrets)."""
    settings = get_services().settings
    return {"status": "ok", "registry": settings.registry, "backends": settings.describe()}
