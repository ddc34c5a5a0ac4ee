"""A loopback stand-in for the Log Analytics query API, enough for ``azure-monitor-query``'s real
``LogsQueryClient``.

It answers ``POST /v1/workspaces/<id>/query`` (workspace context) and ``POST /v1/<resource id>/query``
(resource context) in the documented shape: ``{"tables": [{"name", "columns": [{"name", "type"}],
"rows": [[...]]}]}``, with ``"error"`` beside the tables for a partial result. A missing
``Authorization`` header gets 401; scripted failures (429 with ``Retry-After``, 5xx) are answered
first. Tests register rows per target with :meth:`LogAnalyticsServer.answer` and read back the
queries the client sent (:attr:`queries`).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.registry import LoopbackServer

COLUMNS = [
    ("Kind", "string"),
    ("Namespace", "string"),
    ("Pod", "string"),
    ("ContainerName", "string"),
    ("ControllerKind", "string"),
    ("ControllerName", "string"),
    ("ContainerStatus", "string"),
    ("Reason", "string"),
    ("Repository", "string"),
    ("Image", "string"),
    ("ImageTag", "string"),
    ("ImageID", "string"),
    ("Message", "string"),
    ("Count", "long"),
    ("FirstSeen", "datetime"),
    ("LastSeen", "datetime"),
]


@dataclass(frozen=True)
class SentQuery:
    target: str  # "workspaces/<id>" or the resource id
    query: str
    timespan: str | None
    authorization: str | None
    prefer: str | None


class LogAnalyticsServer(LoopbackServer):
    def __init__(self) -> None:
        self._answers: dict[str, tuple[list[list[Any]], dict[str, Any] | None]] = {}
        self._failures: dict[str, deque[tuple[int, dict[str, str]]]] = {}
        self._lock = threading.Lock()
        self.queries: list[SentQuery] = []
        super().__init__(_Handler)

    def __enter__(self) -> LogAnalyticsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return self.url

    def answer(self, target: str, rows: list[dict[str, Any]], *, partial_error: dict[str, Any] | None = None) -> None:
        """Answer queries on ``target`` with ``rows`` (dicts by column name; missing columns are null)."""
        table = [[row.get(name) for name, _ in COLUMNS] for row in rows]
        with self._lock:
            self._answers[target.strip("/").lower()] = (table, partial_error)

    def fail(self, target: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._failures.setdefault(target.strip("/").lower(), deque()).extend([(status, headers or {})] * times)

    def _respond(self, target: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            failures = self._failures.get(target.lower())
            if failures:
                status, headers = failures.popleft()
                error = {
                    "error": {"code": "ThrottledError" if status == 429 else "ServiceError", "message": "try later"}
                }
                return status, headers, json.dumps(error).encode()
            answer = self._answers.get(target.lower())
        if answer is None:
            error = {"error": {"code": "PathNotFoundError", "message": f"The requested path does not exist: {target}"}}
            return 404, {}, json.dumps(error).encode()
        rows, partial = answer
        body: dict[str, Any] = {
            "tables": [{"name": "PrimaryResult", "columns": [{"name": n, "type": t} for n, t in COLUMNS], "rows": rows}]
        }
        if partial is not None:
            body["error"] = partial
        return 200, {}, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    @property
    def server_state(self) -> LogAnalyticsServer:
        owner: LogAnalyticsServer = self.server.owner  # type: ignore[attr-defined]
        return owner

    def do_POST(self) -> None:
        path = unquote(urlsplit(self.path).path)
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        if not path.startswith("/v1/") or not path.endswith("/query"):
            self._send(404, {}, b'{"error": {"code": "PathNotFoundError", "message": "unknown path"}}')
            return
        target = path[len("/v1/") : -len("/query")].strip("/")
        authorization = self.headers.get("Authorization")
        self.server_state.queries.append(
            SentQuery(
                target, payload.get("query", ""), payload.get("timespan"), authorization, self.headers.get("Prefer")
            )
        )
        if not authorization:
            self._send(401, {}, b'{"error": {"code": "AuthorizationRequiredError", "message": "no token"}}')
            return
        self._send(*self.server_state._respond(target))

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
