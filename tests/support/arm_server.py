"""A loopback stand-in for Azure Resource Manager: enough of ARM for the real management SDK.

It answers ``GET <resource id>?api-version=...`` with the JSON registered for that id, the way ARM
does: resource ids match case-insensitively, unknown ids get ``404 ResourceNotFound``, a missing
``Authorization`` header gets ``401 AuthenticationFailed``, a missing or unknown ``api-version``
gets ``400``. Every error body has ARM's shape ``{"error": {"code": ..., "message": ...}}``.

Tests register resources with :meth:`ArmServer.put` and pages of list operations with
:meth:`ArmServer.put_page` (``GET <collection>?api-version=...``, later pages by ``$skipToken``),
script failures with :meth:`ArmServer.fail` (answered before the resource, ``times`` times),
:meth:`ArmServer.respond_raw` (any body) or :meth:`ArmServer.drop` (close the connection without
answering), and read back what the SDK sent from :attr:`ArmServer.requests`.

The server binds port 0, so the operating system picks a free port: no race with other servers.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

SUPPORTED_API_VERSIONS = frozenset({"2025-11-01"})

# ARM's error codes for the statuses tests simulate.
DEFAULT_ERROR_CODES: Mapping[int, str] = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "ResourceNotFound",
    408: "RequestTimeout",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _key(resource_id: str) -> str:
    return unquote(resource_id).rstrip("/").lower()


SKIP_TOKEN = "$skipToken"


def _page_key(collection: str, skip_token: str | None) -> str:
    return _key(collection) + (f"?{SKIP_TOKEN.lower()}={skip_token.lower()}" if skip_token else "")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    authorization: str | None

    @property
    def api_version(self) -> str | None:
        values = self.query.get("api-version")
        return values[0] if values else None

    def is_for(self, resource_id: str) -> bool:
        return _key(self.path) == _key(resource_id)


@dataclass
class _Scripted:
    """A canned answer used ``remaining`` more times before the resource itself answers."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    remaining: int
    drop: bool = False


class ArmServer:
    """A threaded HTTP server on 127.0.0.1; use as a context manager or call start/stop."""

    def __init__(self, *, api_versions: Iterable[str] = SUPPORTED_API_VERSIONS) -> None:
        self._api_versions = frozenset(api_versions)
        self._resources: dict[str, bytes] = {}
        self._scripts: dict[str, deque[_Scripted]] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ArmServer:
        handler = type("_BoundHandler", (_Handler,), {"arm": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        # A short poll interval keeps stop() (and so every test's teardown) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="arm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ArmServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the ARM test server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- fixtures ----------------------------------------------------------------------------
    def put(self, resource_id: str, body: Mapping[str, Any]) -> None:
        """Serve ``body`` (ARM JSON) for GETs of ``resource_id``."""
        with self._lock:
            self._resources[_key(resource_id)] = json.dumps(body).encode()

    def put_page(self, collection: str, body: Mapping[str, Any], *, skip_token: str | None = None) -> None:
        """Serve one page of a list operation: ``{"value": [...], "nextLink": ...}``.

        The first page (no ``skip_token``) answers ``GET <collection>``; a later one answers
        ``GET <collection>?$skipToken=<skip_token>``, as ARM's nextLinks ask. A ``nextLink`` in ``body``
        (ARM's are absolute https URLs on management.azure.com) is re-pointed at this running server,
        keeping its path and query.
        """
        page = dict(body)
        next_link = page.get("nextLink")
        if next_link:
            parts = urlsplit(str(next_link))
            page["nextLink"] = urlunsplit(("http", f"127.0.0.1:{self.port}", parts.path, parts.query, ""))
        with self._lock:
            self._resources[_page_key(collection, skip_token)] = json.dumps(page).encode()

    def remove(self, resource_id: str) -> None:
        with self._lock:
            self._resources.pop(_key(resource_id), None)

    def fail(
        self,
        resource_id: str,
        status: int,
        *,
        times: int = 1,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests for ``resource_id`` with ``status`` and an ARM error body.

        ``retry_after`` (seconds) adds ``Retry-After``, as ARM does on 429 and some 503s.
        """
        code = code or DEFAULT_ERROR_CODES.get(status, "Error")
        message = message or f"Simulated {status} {code} for {resource_id}."
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        self._script(resource_id, _Scripted(status, json.dumps(error_body(code, message)).encode(), headers, times))

    def respond_raw(
        self, resource_id: str, status: int, body: bytes, *, content_type: str = "text/html", times: int = 1
    ) -> None:
        """Answer the next ``times`` requests with exactly this body (e.g. a proxy's HTML page)."""
        self._script(resource_id, _Scripted(status, body, {"Content-Type": content_type}, times))

    def drop(self, resource_id: str, *, times: int = 1) -> None:
        """Close the connection without answering the next ``times`` requests (a reset mid-request)."""
        self._script(resource_id, _Scripted(0, b"", {}, times, drop=True))

    def reset(self) -> None:
        with self._lock:
            self._resources.clear()
            self._scripts.clear()
            self._requests.clear()

    # -- inspection --------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, resource_id: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.is_for(resource_id)]

    # -- request handling (server threads) ---------------------------------------------------
    def _script(self, resource_id: str, scripted: _Scripted) -> None:
        if scripted.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._scripts.setdefault(_key(resource_id), deque()).append(scripted)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_script(self, key: str) -> _Scripted | None:
        with self._lock:
            queue = self._scripts.get(key)
            if not queue:
                return None
            scripted = queue[0]
            scripted.remaining -= 1
            if scripted.remaining == 0:
                queue.popleft()
            return scripted

    def _resource(self, key: str) -> bytes | None:
        with self._lock:
            return self._resources.get(key)

    def _answer(self, method: str, path: str, query: Mapping[str, list[str]], has_auth: bool) -> _Scripted:
        """What ARM would answer; ``_Scripted`` doubles as the response value (remaining unused)."""
        json_headers = {"Content-Type": "application/json; charset=utf-8"}

        def error(status: int, code: str, message: str) -> _Scripted:
            return _Scripted(status, json.dumps(error_body(code, message)).encode(), json_headers, 0)

        key = _key(path)
        scripted = self._next_script(key)
        if scripted is not None:
            return scripted
        if not has_auth:
            return error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        api_versions = query.get("api-version")
        api_version = api_versions[0] if api_versions else None
        if api_version is None:
            return error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if api_version not in self._api_versions:
            return error(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for API version '{api_version}'.",
            )
        if method != "GET":
            return error(405, "MethodNotAllowed", f"The test ARM server only answers GET, not {method}.")
        skip_tokens = query.get(SKIP_TOKEN) or query.get(SKIP_TOKEN.lower())
        body = self._resource(_page_key(path, skip_tokens[0]) if skip_tokens else key)
        if body is None:
            return error(404, "ResourceNotFound", f"The Resource '{path}' was not found.")
        return _Scripted(200, body, json_headers, 0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when a test fires many requests at once; the
    # client then waits a full second for the TCP SYN to be retransmitted.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    arm: ArmServer  # set on the per-server subclass
    server_version = "acrsync-arm-test"

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        authorization = self.headers.get("Authorization")
        query = parse_qs(parts.query)
        self.arm._record(RecordedRequest(self.command, unquote(parts.path), query, authorization))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        answer = self.arm._answer(self.command, parts.path, query, bool(authorization))
        if answer.drop:
            # Closing without a status line makes the client see a reset, as from a load balancer.
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_POST = _handle
    do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("arm-server: %s", format % args)
