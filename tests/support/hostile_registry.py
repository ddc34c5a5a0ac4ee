"""Hostile site registries for tests: loopback HTTP servers (standard library only) that answer the
way a broken or malicious registry might, which a real ``docker-registry`` will not do on demand.

:class:`HostileServer` answers every request with ``respond(request)`` -> :class:`Answer`, written
as raw bytes so an answer may carry what a well-behaved server never sends: header bytes outside
ASCII, a declared length that lies, a chunked body of any size produced lazily, the whole answer
dripped a byte at a time, or an answer held back until the test releases it. It records every
request (method, path, the ``Authorization`` header it carried) and how each answer ended
(``answered``, ``client hung up``, ``stopped``), plus an ordered log of arrivals and answers, so
tests assert ordering and behaviour rather than time.

:func:`bearer_challenge` and :func:`token_answer` build the usual pieces of a Bearer flow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.registry import LoopbackServer

log = logging.getLogger(__name__)

IN_FLIGHT = "in flight"
ANSWERED = "answered"
HUNG_UP = "client hung up"
STOPPED = "stopped"


@dataclass(frozen=True)
class Answer:
    """One scripted answer.

    Args:
        status: the status code (the reason phrase is the standard one, or ``Hostile``).
        headers: name and value pairs, in order; ``bytes`` values are sent as they are.
        body: the body; ``Content-Length`` is ``len(body)`` unless ``length`` says otherwise.
        chunks: a chunked body instead, produced lazily (so it may be larger than memory).
        drip_seconds: spread the whole answer (status line, headers, body) over this long, one
            byte at a time.
        hold: wait for this event (or the server's stop) before answering.
        length: the ``Content-Length`` to declare; ``None`` with ``body`` means ``len(body)``.
    """

    status: int = 200
    headers: Sequence[tuple[str, str | bytes]] = ()
    body: bytes = b""
    chunks: Callable[[], Iterable[bytes]] | None = None
    drip_seconds: float = 0.0
    hold: threading.Event | None = None
    length: int | None = None


@dataclass
class Seen:
    """One request the server received, and how its answer ended."""

    number: int
    method: str
    path: str
    authorization: str | None
    outcome: str = IN_FLIGHT


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer is the point of these servers, not an error to print.
        log.debug("hostile server: error while serving %s", client_address)


class _HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's parameter name
        log.debug("hostile server: %s", format % args)

    def _answer(self) -> None:
        server: HostileServer = self.server.owner  # type: ignore[attr-defined]
        seen = server._arrived(self.command, self.path, self.headers.get("Authorization"))
        answer = server.respond(seen)
        if answer.hold is not None:
            while not answer.hold.wait(0.01) and not server.stopping.is_set():
                pass
        outcome = STOPPED if server.stopping.is_set() else ANSWERED
        # Logged before the first byte goes out: the client cannot act on an answer before this.
        server._answering(seen)
        try:
            if outcome == ANSWERED:
                outcome = self._write(answer, server.stopping)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            outcome = HUNG_UP
        if outcome != ANSWERED:
            self.close_connection = True
        server._done(seen, outcome)

    do_GET = _answer
    do_HEAD = _answer

    def _write(self, answer: Answer, stopping: threading.Event) -> str:
        head = bytearray()
        try:
            phrase = HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = "Hostile"
        head += f"HTTP/1.1 {answer.status} {phrase}\r\n".encode("ascii")
        for name, value in answer.headers:
            head += name.encode("ascii") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1"))
            head += b"\r\n"
        if answer.chunks is not None:
            head += b"Transfer-Encoding: chunked\r\n"
        else:
            head += f"Content-Length: {len(answer.body) if answer.length is None else answer.length}\r\n".encode()
        head += b"\r\n"
        with_body = self.command != "HEAD"
        if answer.drip_seconds > 0:
            data = bytes(head) + (answer.body if with_body and answer.chunks is None else b"")
            interval = answer.drip_seconds / max(len(data), 1)
            for index in range(len(data)):
                self.wfile.write(data[index : index + 1])
                if stopping.wait(interval):
                    return STOPPED
            return ANSWERED
        self.wfile.write(bytes(head))
        if not with_body:
            return ANSWERED
        if answer.chunks is None:
            self.wfile.write(answer.body)
            return ANSWERED
        for chunk in answer.chunks():
            if stopping.is_set():
                return STOPPED
            if chunk:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        return ANSWERED


class HostileServer(LoopbackServer):
    """A loopback HTTP server answering every request with ``respond(request)``.

    ``events`` is the ordered log of ``("arrived", n)``, ``("answering", n)`` and
    ``("done", n, outcome)`` entries; :meth:`most_in_flight` reads the largest number of requests
    that had arrived and were not yet being answered.
    """

    def __init__(self, respond: Callable[[Seen], Answer]) -> None:
        self.respond = respond
        # Re-entrant: wait_for's condition may call seen() while the condition holds the lock.
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.changed = threading.Condition(self.lock)
        self.requests: list[Seen] = []
        self.events: list[tuple[Any, ...]] = []
        super().__init__(_HostileHandler, _Server)

    def seen(self) -> list[Seen]:
        with self.lock:
            return list(self.requests)

    def authorizations(self) -> list[str | None]:
        """The ``Authorization`` header of every request, in order (``None`` where there was none)."""
        return [seen.authorization for seen in self.seen()]

    def most_in_flight(self) -> int:
        """The most requests that had arrived at once without their answer being started."""
        with self.lock:
            events = list(self.events)
        level = most = 0
        for event in events:
            if event[0] == "arrived":
                level += 1
                most = max(most, level)
            elif event[0] == "answering":
                level -= 1
        return most

    def wait_for(self, condition: Callable[[HostileServer], bool], *, limit: float = 30.0) -> bool:
        """Wait until ``condition(self)`` holds (re-checked whenever a request arrives or ends).

        ``limit`` only keeps a broken test from hanging; callers assert on the return value.
        """
        with self.changed:
            return self.changed.wait_for(lambda: condition(self), timeout=limit)

    def stop(self) -> None:
        self.stopping.set()  # answers still dripping or held stop first
        super().stop()

    # -- called by the handler threads -------------------------------------------------------

    def _arrived(self, method: str, path: str, authorization: str | None) -> Seen:
        with self.changed:
            seen = Seen(len(self.requests) + 1, method, path, authorization)
            self.requests.append(seen)
            self.events.append(("arrived", seen.number))
            self.changed.notify_all()
        return seen

    def _answering(self, seen: Seen) -> None:
        with self.changed:
            self.events.append(("answering", seen.number))
            self.changed.notify_all()

    def _done(self, seen: Seen, outcome: str) -> None:
        with self.changed:
            seen.outcome = outcome
            self.events.append(("done", seen.number, outcome))
            self.changed.notify_all()


@contextlib.contextmanager
def hostile_server(respond: Callable[[Seen], Answer]) -> Iterator[HostileServer]:
    server = HostileServer(respond)
    try:
        yield server
    finally:
        server.stop()


def bearer_challenge(realm: str, *, service: str = "hostile", scope: str = "repository:edge/app:pull") -> Answer:
    """``401`` with a Bearer challenge naming ``realm``."""
    challenge = f'Bearer realm="{realm}",service="{service}",scope="{scope}"'
    return Answer(401, [("WWW-Authenticate", challenge), ("Content-Type", "application/json")])


def token_answer(document: Any = None, *, token: str = "hostile-token", expires_in: float = 300) -> Answer:
    """``200`` with a token document (``document`` replaces the usual one when given)."""
    body = document if document is not None else {"token": token, "expires_in": expires_in}
    return Answer(200, [("Content-Type", "application/json")], json.dumps(body).encode())


@dataclass
class BearerScript:
    """A registry whose manifest HEAD wants a Bearer token from ``realm`` (set once the servers run)
    and answers ``present`` to any request carrying one; ``token`` answers the token endpoint."""

    digest: str
    token: Callable[[Seen], Answer] = field(default=lambda seen: token_answer())
    realm: str = ""
    manifest_type: str = "application/vnd.oci.image.manifest.v1+json"

    def __call__(self, seen: Seen) -> Answer:
        if seen.path.startswith("/token"):
            return self.token(seen)
        if seen.authorization and seen.authorization.startswith("Bearer "):
            return Answer(200, [("Docker-Content-Digest", self.digest), ("Content-Type", self.manifest_type)])
        return bearer_challenge(self.realm)
