"""Liveness: ``GET /api/healthz`` (public; never secrets)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from shared.bootstrap import get_services

router = APIRouter(prefix="/api")


@router.get("/healthz", tags=["health"], operation_id="healthz")
def healthz() -> dict[str, Any]:
    """Liveness and the backends this process uses (never secrets)."""
    return {"status": "ok", "backends": get_services().settings.describe()}
