"""A loopback stand-in for an Event Grid topic's publish endpoint, to test the real SDK on the wire.

It accepts ``POST /api/events?api-version=...``, records every request (method, path, query,
headers, raw and parsed body) and answers 200, or a status the test queued with :meth:`fail_next`.
Any other path gets 404, as a wrong topic endpoint would. The server runs on a free loopback port in
a daemon thread; :meth:`stop` ends it (idempotent), and it is a context manager.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

EVENTS_PATH = "/api/events"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the receiver saw it. ``headers`` keys are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_body: bytes
    body: Any = field(default=None)  # the parsed JSON, or None when the body was not JSON
    status: int = 200  # what the receiver answered


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


class EventGridReceiver:
    """A recording HTTP server on ``127.0.0.1``; :attr:`endpoint` is the topic URL to publish to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        # What to answer the next POSTs with, in order; None is a plain 200.
        self._plan: deque[_Answer | None] = deque()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, and every test stops a server.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="eventgrid-receiver", daemon=True
        )
        self._thread.start()
        self._stopped = False

    # -- test-facing API -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{EVENTS_PATH}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of every accepted (200) request, in arrival order."""
        return [event for request in self.requests if request.status == 200 for event in request.body or []]

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        after: int = 0,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Let ``after`` requests succeed, then answer ``count`` with ``status`` and an Event
        Grid-like error body (plans queue up behind earlier ones)."""
        payload = body if body is not None else {"error": {"code": f"Http{status}", "message": "injected by test"}}
        failure = _Answer(status, json.dumps(payload).encode(), tuple((headers or {}).items()))
        with self._lock:
            self._plan.extend([None] * after + [failure] * count)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._plan.clear()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EventGridReceiver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- server side ---------------------------------------------------------------------------
    def _answer(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Answer | None:
        """Record the request; returns the queued failure to answer with, or None for 200."""
        parts = urlsplit(target)
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        with self._lock:
            if parts.path != EVENTS_PATH or method != "POST":
                failure: _Answer | None = _Answer(404, b'{"error": {"code": "NotFound"}}', ())
            else:
                failure = self._plan.popleft() if self._plan else None
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers=headers,
                    raw_body=raw,
                    body=parsed,
                    status=failure.status if failure else 200,
                )
            )
        return failure

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Event Grid speaks to the SDK's session

            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._answer(self.command, self.path, headers, raw)
                if answer is None:
                    answer = _Answer(200, b"", ())
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                # Silent: the tests assert on the recorded requests, not on stderr.
                return

        return Handler
