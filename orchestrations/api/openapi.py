"""The OpenAPI document as the app really answers: FastAPI's, adjusted (problem+json errors, 400 for 422,
the security each operation needs, the webhook's handshake)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from orchestrations.api.auth import (
    KEY_HEADER,
    KEY_QUERY,
    PRINCIPAL_HEADER,
    WEBHOOK_PREFIX,
    is_site_report,
    required_role,
)
from orchestrations.api.problems import PROBLEM_JSON

_SECURITY_SCHEMES = {
    "functionKey": {
        "type": "apiKey",
        "in": "header",
        "name": KEY_HEADER,
        "description": "Azure function key, or the local ACRSYNC_API_KEY (also accepted as ?code=).",
    },
    "functionKeyQuery": {"type": "apiKey", "in": "query", "name": KEY_QUERY},
    "appServicePrincipal": {
        "type": "apiKey",
        "in": "header",
        "name": PRINCIPAL_HEADER,
        "description": "Set by App Service Authentication (Entra ID); app roles Status.Read and Sync.Operate.",
    },
    "siteReportToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A site's report token (POST /api/sites/{site}/report-token): that site's reports only.",
    },
}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, adjusted to what the app really answers: errors are problem+json with an
    x-ms-error-code header, 400 replaces FastAPI's 422, and protected operations name their security."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=(
            "Errors are RFC 9457 application/problem+json with a stable `code`, mirrored in `x-ms-error-code`. "
            "Unknown query parameters are refused with 400 UNKNOWN_QUERY_PARAMETER. Reads carry a strong ETag "
            "and honour If-None-Match. nextLink never carries the function key: send it as x-functions-key."
        ),
        routes=app.routes,
    )
    for path, operations_of_path in document.get("paths", {}).items():
        for method, operation in operations_of_path.items():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    _as_problem(response)
            role = required_role(method.upper(), path)
            if role is not None:
                operation["security"] = [{"functionKey": []}, {"functionKeyQuery": []}, {"appServicePrincipal": []}]
                operation["description"] = (
                    operation.get("description", "")
                    + f"\n\nNeeds the app role {role.value} when a principal is present."
                ).strip()
            elif path.startswith(WEBHOOK_PREFIX):
                _document_webhook(method, operation)
            elif is_site_report(method.upper(), path.replace("{site}", "site")):
                operation["security"] = [{"siteReportToken": []}]
            else:
                operation["security"] = []
    components = document.setdefault("components", {})
    schemas = components.get("schemas", {})
    if not _references(document.get("paths", {}), "HTTPValidationError"):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    components["securitySchemes"] = _SECURITY_SCHEMES
    return document


def _document_webhook(method: str, operation: dict[str, Any]) -> None:
    """The ingress answers problems too, and 401 when the local API key is set."""
    responses = operation.setdefault("responses", {})
    if method == "options":
        responses["200"] = {
            "description": "Handshake accepted: WebHook-Allowed-Origin names the origin that asked.",
            "headers": {"WebHook-Allowed-Origin": {"schema": {"type": "string"}}},
        }
    statuses = ("400", "401") if method == "options" else ("400", "401", "404")
    for status_code in statuses:
        responses[status_code] = {"description": "Problem."}
        _as_problem(responses[status_code])
    operation["security"] = [{"functionKey": []}, {"functionKeyQuery": []}, {}]


def _as_problem(response: dict[str, Any]) -> None:
    content = response.get("content", {})
    schema = content.pop("application/json", {}).get("schema") or {"$ref": "#/components/schemas/Problem"}
    content[PROBLEM_JSON] = {"schema": schema}
    response["content"] = content
    response.setdefault("headers", {})["x-ms-error-code"] = {
        "description": "The problem's stable code.",
        "schema": {"type": "string"},
    }


def _references(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        return any(_references(item, name) for item in value.values())
    if isinstance(value, list):
        return any(_references(item, name) for item in value)
    return isinstance(value, str) and value.endswith("/" + name)
