"""The HTTP triggers: the ASGI app (:mod:`orchestrations.api`) behind routes declared one by one.

With ``routePrefix`` "" a catch-all route (``{*route}``, what ``AsgiFunctionApp`` declares) would also match
the host's own ``/admin/...`` and ``/runtime/webhooks/...`` paths, and catch-all routes have shadowed the admin
API before (azure-functions-host issues 2590 and 6990). So every route here starts with a literal segment the
host does not use: ``api/`` and ``dashboard``. Event Grid reaches the Event Grid trigger through the host's
``/runtime/webhooks/eventgrid``, which stays the host's (the app's webhook twin at that path serves the local
runtime only).

Function keys: ``api/{*path}`` needs one (``AuthLevel.FUNCTION``). Liveness (``api/healthz``), the OpenAPI
document and its docs page, and the dashboard page (it holds no data; it calls the API with the key it is
opened with, ``?code=``) are anonymous, as the app itself treats them (:mod:`orchestrations.api.auth`).
Site reports (``api/sites/{site}/reports``, POST) are anonymous to the host too: the app checks the site's
own report token, so no site holds a function key (which opens every route).
"""

from __future__ import annotations

import azure.functions as func

from orchestrations.api import create_app

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
READ_METHODS = ("GET", "HEAD")

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated
_asgi = func.AsgiMiddleware(create_app())


@bp.function_name("http_api")
@bp.route(route="api/{*path}", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def http_api(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)


@bp.function_name("http_health")
@bp.route(route="api/healthz", methods=READ_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def http_health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)


@bp.function_name("http_openapi")
@bp.route(route="api/openapi.json", methods=READ_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def http_openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)


@bp.function_name("http_docs")
@bp.route(route="api/docs", methods=READ_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def http_docs(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)


@bp.function_name("http_site_reports")
@bp.route(route="api/sites/{site}/reports", methods=("POST",), auth_level=func.AuthLevel.ANONYMOUS)
async def http_site_reports(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)


@bp.function_name("http_dashboard")
@bp.route(route="dashboard/{*page}", methods=READ_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def http_dashboard(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)
