"""RFC 9457 problem+json responses with a stable ``code`` (mirrored in ``x-ms-error-code``)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import ConfigurationError, InvalidInput, NotFound, TransientError

logger = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://acrsync.dev/problems/"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
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


def install_problem_handlers(app: FastAPI) -> None:
    """Map the exception tree to problem+json; no input may produce a 5xx, and no 5xx leaks a detail."""

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
        return problem(400, exc.code, "Invalid input", exc.detail, instance=request.url.path)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "NOT_FOUND", "Not found", str(exc), instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return problem(
            400,
            "INVALID_REQUEST",
            "Invalid request",
            f"{where}: {first.get('msg', 'invalid')}",
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail), instance=request.url.path)

    @app.exception_handler(TransientError)
    async def transient(request: Request, exc: TransientError) -> JSONResponse:
        logger.warning("transient failure on %s: %s", request.url.path, type(exc).__name__)
        return problem(
            503,
            "BACKEND_UNAVAILABLE",
            "Backend unavailable",
            "a backend is unavailable; retry later",
            instance=request.url.path,
            headers={"Retry-After": "10"},
        )

    @app.exception_handler(ConfigurationError)
    async def misconfigured(request: Request, exc: ConfigurationError) -> JSONResponse:
        logger.error("configuration error: %s", exc)
        return problem(
            503,
            "MISCONFIGURED",
            "Service misconfigured",
            "the service is not configured correctly",
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected failure on %s", request.url.path, exc_info=exc)
        return problem(
            500, "INTERNAL_ERROR", "Internal error", "an unexpected error occurred", instance=request.url.path
        )
