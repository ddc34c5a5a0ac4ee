"""The dashboard: one static page (no build step) that reads the status API from the browser."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

router = APIRouter(include_in_schema=False)
_PAGE = Path(__file__).parent / "static" / "dashboard.html"


@router.get("/")
def dashboard() -> HTMLResponse:
    return HTMLResponse(_PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})


@router.get("/releases/{release_id}")
def release_page(release_id: str) -> RedirectResponse:
    return RedirectResponse(f"/#/release/{release_id[:64]}")


@router.get("/sites/{site}")
def site_page(site: str) -> RedirectResponse:
    return RedirectResponse(f"/#/site/{site[:64]}")
