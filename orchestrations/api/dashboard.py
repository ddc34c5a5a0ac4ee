"""The dashboard: one static page (no build step) that reads the status API from the browser.

Served at ``/dashboard`` (in Azure the only path the host routes to it, see :mod:`orchestrations.http`) and,
locally, at ``/`` as well. The page, its script and its style sheet are separate files so the page can send a
Content-Security-Policy without ``unsafe-inline``: nothing but this origin's own script runs, it cannot be
framed, and the function key it is opened with (``?code=``) never leaves in a ``Referer``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)
_STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_FILES = {
    "page": ("dashboard.html", "text/html; charset=utf-8"),
    "script": ("dashboard.js", "text/javascript; charset=utf-8"),
    "style": ("dashboard.css", "text/css; charset=utf-8"),
}


def _file(kind: str) -> Response:
    name, media_type = _FILES[kind]
    return Response((_STATIC / name).read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
@router.get("/dashboard")
@router.get("/dashboard/")
def dashboard() -> Response:
    return _file("page")


@router.get("/dashboard/app.js")
def dashboard_script() -> Response:
    return _file("script")


@router.get("/dashboard/app.css")
def dashboard_style() -> Response:
    return _file("style")


@router.get("/releases/{release_id}")
def release_page(release_id: str) -> RedirectResponse:
    return RedirectResponse(f"/#/release/{release_id[:64]}")


@router.get("/sites/{site}")
def site_page(site: str) -> RedirectResponse:
    return RedirectResponse(f"/#/site/{site[:64]}")
