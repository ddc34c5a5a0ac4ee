"""RFC 9457 problem+json responses with a stable ``code`` (mirrored in ``x-ms-error-code``).

Codes are part of the API contract: clients (the CLI, pipelines) branch on them, never on ``detail``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import AcrSyncError, ConfigurationError, TransientError, Unauthenticated, http_answer

logger = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://acrsync.dev/problems/"

# A request parameter that fails validation gets the code of what it names; others INVALID_REQUEST.
PARAMETER_CODES = {
    "release_id": "INVALID_RELEASE_ID",
    "site": "INVALID_SITE_NAME",
    "repository": "INVALID_REPOSITORY",
    "tag": "INVALID_TAG",
    "digest": "INVALID_DIGEST",
    "top": "INVALID_TOP",
    "continuation": "INVALID_CONTINUATION",
    "min_ready": "INVALID_MIN_READY",
    "ring": "INVALID_RING",
    "sites": "INVALID_SITE_LIST",
    "limit": "INVALID_LIMIT",
    "after": "INVALID_CURSOR",
}
RETRY_AFTER_SECONDS = 10  # what a 503 tells clients to wait before trying again


class Problem(BaseModel):
    """An RFC 9457 problem; ``code`` is stable and also sent as the ``x-ms-error-code`` header."""

    type: str = Field(description="A URI naming the problem type.")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable code, e.g. RELEASE_NOT_FOUND.")
    instance: str | None = Field(default=None, description="The request path.")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + code.lower().replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers={"x-ms-error-code": code, **(headers or {})}
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses (the app documents them as problem+json)."""
    described = {
        400: "Invalid request: a bad parameter, an unknown query parameter, an unknown site or ring in a selection.",
        401: "No or wrong credentials (API key, or the App Service Authentication principal).",
        403: "The principal lacks the app role the route needs (Status.Read, or Sync.Operate for actions).",
        404: "No such release, site or resource.",
        503: "A backend is unavailable; retry after the Retry-After seconds.",
    }
    return {status: {"model": Problem, "description": described.get(status, "Error")} for status in statuses}


def install_problem_handlers(app: FastAPI) -> None:
    """Map the exception tree to problem+json; no input may produce a 5xx, and no 5xx leaks a detail."""

    @app.exception_handler(AcrSyncError)
    async def acrsync_error(request: Request, exc: AcrSyncError) -> JSONResponse:
        answer = http_answer(exc)
        path = request.url.path
        if not answer.expected:
            logger.error("unexpected failure on %s", path, exc_info=exc)
            return _internal_error(path)
        headers: dict[str, str] = {}
        if isinstance(exc, TransientError):
            logger.warning("transient failure on %s: %s", path, type(exc).__name__)
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        elif isinstance(exc, ConfigurationError):
            logger.error("configuration error: %s", exc)
        elif isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = f'{exc.scheme} realm="acrsync"'
        return problem(answer.status, exc.code, answer.title, exc.detail, instance=path, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        # Path first: a bad release id says more than a bad query parameter of the same request.
        errors.sort(key=lambda error: 0 if tuple(error.get("loc", ()))[:1] == ("path",) else 1)
        first = errors[0] if errors else {}
        loc = tuple(first.get("loc", ()))
        code = "INVALID_REQUEST"
        if len(loc) == 2 and loc[0] in ("path", "query"):
            code = PARAMETER_CODES.get(str(loc[1]), code)
        where = ".".join(str(part) for part in loc)
        return problem(
            400, code, "Invalid request", f"{where}: {first.get('msg', 'invalid')}", instance=request.url.path
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return problem(
            exc.status_code,
            code,
            str(exc.detail),
            str(exc.detail),
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected failure on %s", request.url.path, exc_info=exc)
        return _internal_error(request.url.path)


def _internal_error(path: str) -> JSONResponse:
    return problem(500, AcrSyncError.code, "Internal error", AcrSyncError.detail, instance=path)
