"""Asking a site's registry directly whether it holds a manifest (OCI distribution API over ``httpx``).

:class:`HttpManifestProbe` implements :class:`~shared.ports.ManifestProbe`: one
``HEAD /v2/<repository>/manifests/<digest>``, answering a ``401`` challenge once. ``Basic`` is answered
with the site's credentials; ``Bearer`` with a token fetched from the challenge's realm (Basic
credentials when the site has some, anonymously otherwise). Tokens are cached per realm, service,
scope and credentials until ``expires_in``. The challenge answered for a repository is remembered, so
the next probe sends the cached token (or the Basic credentials) up front and saves the ``401``
round trip; if that is refused, the fresh challenge is answered once more.

Errors: ``httpx`` exceptions are translated in one place (:func:`_translated`); statuses by
:func:`_status_error`. Only :class:`UpstreamUnavailable` (retry later) and :class:`UpstreamRejected`
(retrying cannot help) leave this module. Neither messages nor logs ever carry the password, the
``Authorization`` header or a token; logging is DEBUG only.

:class:`StaticSiteCredentials` implements :class:`~shared.ports.SiteCredentials` from a mapping (local
runs and tests; Key Vault backs it in Azure).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import httpx

from shared.domain.observations import BasicCredentials, ManifestObservation, ProbeOutcome
from shared.domain.workloads import DisconnectedPull, DisconnectedPullCheck
from shared.errors import ConfigurationError, UpstreamRejected, UpstreamUnavailable

log = logging.getLogger(__name__)

# What a presence check accepts: an image index or manifest, OCI or Docker. Without these a registry
# may answer a by-digest HEAD for an index with 404 (it cannot convert) or with a converted manifest.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
USER_AGENT = "acrsync-probe/1"

SITE_CREDENTIALS_SETTING = "ACRSYNC_SITE_CREDENTIALS"

# The distribution token spec's default lifetime when the token endpoint states none.
DEFAULT_TOKEN_LIFETIME = timedelta(seconds=60)
# A token is dropped a little before it expires, so it does not expire on its way to the registry.
TOKEN_EXPIRY_MARGIN = timedelta(seconds=5)
# Upper bound on remembered per-repository challenges; the cache is an optimisation, not state.
MAX_REMEMBERED_CHALLENGES = 4096
# One probe, every request of it together (see HttpManifestProbe).
DEFAULT_DEADLINE_S = 30.0
MAX_PROBES_PER_ENDPOINT = 2
# What the probe reads from a registry at the most: a token answer (a JWT is a few KiB) and headers.
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
MAX_CHALLENGE_BYTES = 8 * 1024
MAX_DIGEST_LENGTH = 200
# A manifest read for a pull check; real ones are a few KiB, an index of many platforms tens.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# However long a registry says a token lives, it is asked for a new one after this.
MAX_TOKEN_LIFETIME = timedelta(days=1)

_RETRYABLE_STATUS = frozenset({408, 429})

# The distribution spec's repository-name and digest grammars. Both end up in the URL path, so
# anything else (``..``, ``?``, ``#``, ``%``) is refused before a request is made.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

# RFC 9110 section 11: challenges are ``scheme [ token68 / #auth-param ]``, separated by commas,
# and auth-param values may be quoted strings holding commas, colons and escaped quotes.
_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_AUTH_PARAM = re.compile(rf'\s*({_TCHARS})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*')
_SCHEME = re.compile(rf"\s*({_TCHARS})(?=\s|,|$)\s*")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=\s*(?:,|$))")
_SEPARATOR = re.compile(r"[\s,]*")
_QUOTED_PAIR = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge; ``scheme`` lower-cased, parameter names lower-cased."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None


def parse_www_authenticate(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more ``WWW-Authenticate`` header values, in order.

    Tolerant by design: a fragment it cannot read is skipped up to the next comma instead of
    failing the whole header, since the probe only needs the challenge it can answer.
    """
    headers = [values] if isinstance(values, str) else list(values)
    challenges: list[Challenge] = []
    for header in headers:
        scheme: str | None = None
        params: dict[str, str] = {}
        token68: str | None = None
        pos = 0
        while True:
            separator = _SEPARATOR.match(header, pos)
            pos = separator.end() if separator is not None else pos
            if pos >= len(header):
                break
            param = _AUTH_PARAM.match(header, pos)
            if param is not None and scheme is not None:
                params[param.group(1).lower()] = _unquote(param.group(2))
                pos = param.end()
                continue
            start = _SCHEME.match(header, pos)
            if start is not None:
                if scheme is not None:
                    challenges.append(Challenge(scheme, MappingProxyType(params), token68))
                scheme, params, token68 = start.group(1).lower(), {}, None
                pos = start.end()
                blob = _TOKEN68.match(header, pos)
                # "abc==" also reads as the parameter abc with the value "="; token68 is the likelier.
                if blob is not None:
                    token68 = blob.group(0)
                    pos = blob.end()
                continue
            comma = header.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
        if scheme is not None:
            challenges.append(Challenge(scheme, MappingProxyType(params), token68))
    return challenges


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def normalize_endpoint(endpoint: str) -> str:
    """``scheme://host[:port]`` without a trailing slash; ``https`` when no scheme is given.

    Raises:
        UpstreamRejected: the endpoint is not a plain registry address (user info, query, fragment,
            a scheme other than http or https). The message never repeats user info.
    """
    text = endpoint.strip()
    if "://" not in text:  # "host:5000" would otherwise parse as scheme "host"
        text = "https://" + text
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise UpstreamRejected("registry endpoint is not a valid URL") from exc
    if url.userinfo:
        raise UpstreamRejected("registry endpoint must not carry credentials; use the site's credentials")
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise UpstreamRejected(f"registry endpoint must be an http(s)://host[:port] address, got {url.host!r}")
    base = f"{url.scheme}://{url.netloc.decode('ascii')}"
    path = url.path.rstrip("/")
    return base + path


@dataclass(frozen=True)
class _Asked:
    """One probe's question: which manifest, where, with which credentials (and how messages name it)."""

    url: str
    base: str
    repository: str
    digest: str
    credentials: BasicCredentials | None
    operation: str


@dataclass(frozen=True)
class _TokenKey:
    realm: str
    service: str
    scope: str
    # Tokens carry the identity they were issued to, so two sites' credentials never share one.
    credentials: BasicCredentials | None


@dataclass(frozen=True)
class _CachedToken:
    token: str = field(repr=False)
    expires_at: datetime


class HttpManifestProbe:
    """:class:`~shared.ports.ManifestProbe` (safe to share across threads).

    Every probe runs against a deadline that covers all of its requests together (the challenge, the
    token, the answered retry): ``httpx`` timeouts bound each read, so a registry answering one byte at a
    time would otherwise hold a worker for as long as it likes. The requests run on a small event loop of
    their own so the deadline can cancel a request mid-read. At most :data:`MAX_PROBES_PER_ENDPOINT` probes
    of one endpoint are in flight at once (across threads), so one slow site cannot take every worker.

    Args:
        timeout: seconds for each connect, read, write and pool wait.
        deadline: seconds for one whole probe, waiting for its turn at the endpoint included.
        verify: ``True``, ``False`` (loopback tests only) or a CA bundle file or directory.
        clock: timezone-aware "now" for observations and token expiry; UTC wall clock by default.
        transport: an ``httpx`` async transport, for tests.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        deadline: float = DEFAULT_DEADLINE_S,
        verify: bool | str = True,
        clock: Callable[[], datetime] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._timeout = httpx.Timeout(timeout)
        self._deadline = deadline
        self._verify = _ssl_verify(verify)
        self._transport = transport
        self._lock = threading.Lock()
        self._tokens: dict[_TokenKey, _CachedToken] = {}
        # (endpoint, repository) -> the challenge answered successfully last time, to answer it up front.
        self._hints: dict[tuple[str, str], Challenge] = {}
        self._turns: dict[str, threading.BoundedSemaphore] = {}

    def __enter__(self) -> HttpManifestProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between probes (each probe's connections close with it)."""

    # -- the port ------------------------------------------------------------------------------

    def probe(
        self, endpoint: str, repository: str, digest: str, *, credentials: BasicCredentials | None = None
    ) -> ManifestObservation:
        base = normalize_endpoint(endpoint)
        if not _REPOSITORY.fullmatch(repository):
            raise UpstreamRejected(f"not a valid repository name: {_quoted(repository)}")
        if not _DIGEST.fullmatch(digest):
            raise UpstreamRejected(f"not a valid digest: {_quoted(digest)}")
        url = f"{base}/v2/{repository}/manifests/{digest}"
        asked = _Asked(url, base, repository, digest, credentials, operation=f"HEAD {url}")
        started = time.monotonic()
        turn = self._turn(base)
        if not turn.acquire(timeout=self._deadline):
            raise UpstreamUnavailable(
                f"{asked.operation}: the probe deadline of {self._deadline:g} s passed waiting for a turn"
            )
        try:
            return asyncio.run(self._probe_within(self._deadline - (time.monotonic() - started), asked))
        finally:
            turn.release()

    def _turn(self, base: str) -> threading.BoundedSemaphore:
        with self._lock:
            turn = self._turns.get(base)
            if turn is None:  # one per site endpoint: as many as there are sites
                turn = self._turns[base] = threading.BoundedSemaphore(MAX_PROBES_PER_ENDPOINT)
            return turn

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout,
            verify=self._verify,
            transport=self._transport,
            # A redirect could carry the Authorization header to another host; registries do not
            # redirect manifest requests, so one is treated as "not a registry's answer".
            follow_redirects=False,
            # Answers are read raw and capped; an encoded one could expand past the cap unseen.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    async def _probe_within(self, remaining: float, asked: _Asked) -> ManifestObservation:
        client = self._new_client()
        try:
            async with client:
                return await asyncio.wait_for(self._probe(client, asked), max(remaining, 0.0))
        except TimeoutError as exc:
            raise UpstreamUnavailable(f"{asked.operation}: the probe deadline of {self._deadline:g} s passed") from exc

    async def _probe(self, client: httpx.AsyncClient, asked: _Asked) -> ManifestObservation:
        operation, base = asked.operation, asked.base
        with _translated(operation):
            response = await self._head_authenticated(client, asked)
        status = response.status_code
        log.debug(
            "manifest probe answered %s",
            status,
            extra={"endpoint": base, "repository": asked.repository, "digest": asked.digest, "status": status},
        )
        if status == 200:
            return self._present(response, base, asked.digest, operation)
        if status == 404:
            return ManifestObservation(
                outcome=ProbeOutcome.ABSENT, status_code=status, observed_at=self._clock(), endpoint=base
            )
        if status == 401:
            raise UpstreamRejected(f"{operation}: credentials refused")
        raise _status_error(operation, response)

    # -- the request and its challenge ---------------------------------------------------------

    async def _head_authenticated(self, client: httpx.AsyncClient, asked: _Asked) -> httpx.Response:
        """HEAD, and on ``401`` answer the challenge once; a second ``401`` is the caller's to judge."""
        response, _ = await self._authenticated(client, asked, "HEAD")
        return response

    async def _authenticated(
        self, client: httpx.AsyncClient, asked: _Asked, method: str
    ) -> tuple[httpx.Response, bytes]:
        """``method`` (HEAD, or GET of a manifest read up to :data:`MAX_MANIFEST_BYTES`), answering a
        ``401`` challenge once; the response and its body."""
        url, credentials, operation = asked.url, asked.credentials, asked.operation
        hint_key = (asked.base, asked.repository)
        authorization = self._remembered_authorization(hint_key, credentials)
        response, body = await self._send(client, method, url, authorization, operation)
        if response.status_code != 401:
            return response, body
        if authorization is not None:
            # What worked last time was refused (a token revoked or expired early, a password
            # rotated): forget it and answer the fresh challenge instead.
            self._forget(hint_key, credentials)
        offered = response.headers.get_list("www-authenticate")
        if sum(len(value) for value in offered) > MAX_CHALLENGE_BYTES:
            raise UpstreamRejected(f"{operation}: a WWW-Authenticate header longer than {MAX_CHALLENGE_BYTES} bytes")
        challenges = parse_www_authenticate(offered)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        answered: Challenge
        if bearer is not None:
            answered = bearer
            authorization = await self._bearer_authorization(client, bearer, asked)
        elif basic is not None:
            answered = basic
            if credentials is None:
                raise UpstreamRejected(f"{operation}: credentials required (Basic challenge) but the site has none")
            withheld = credentials_withheld(url, asked.base)
            if withheld is not None:
                raise UpstreamRejected(f"{operation}: credentials withheld ({withheld})")
            authorization = _basic_authorization(credentials)
        else:
            schemes = ", ".join(c.scheme[:20] for c in challenges[:5]) or "none"  # schemes are RFC 9110 tokens
            raise UpstreamRejected(f"{operation}: 401 with an unsupported authentication challenge ({schemes})")
        response, body = await self._send(client, method, url, authorization, operation)
        if response.status_code != 401:
            with self._lock:
                if len(self._hints) >= MAX_REMEMBERED_CHALLENGES:
                    self._hints.clear()
                self._hints[hint_key] = answered
        return response, body

    async def _send(
        self, client: httpx.AsyncClient, method: str, url: str, authorization: str | None, operation: str
    ) -> tuple[httpx.Response, bytes]:
        headers = {"Accept": ACCEPT}
        if authorization is not None:
            headers["Authorization"] = authorization
        # Streamed: a HEAD is closed unread (a hostile answer's body is never read), a GET is read
        # only when it answered 200 and only up to the manifest cap.
        async with client.stream(method, url, headers=headers) as response:
            if method == "GET" and response.status_code == 200:
                return response, await _read_capped(response, MAX_MANIFEST_BYTES, operation)
            return response, b""

    # -- disconnected pulls --------------------------------------------------------------------

    def check_pull(
        self, endpoint: str, repository: str, digest: str, *, credentials: BasicCredentials | None = None
    ) -> DisconnectedPullCheck:
        """Whether the registry at ``endpoint`` serves ``digest`` as a pull needs it, on its own: the
        manifest by digest (its bytes must hash to the digest), for an index the first platform's
        manifest too, and then the config blob (``HEAD /v2/<repository>/blobs/<digest>``). Within
        one probe deadline.

        Raises:
            UpstreamUnavailable: the registry could not be reached (that is a failed pull too, but
                the caller tells unreachable from refused).
            UpstreamRejected: a malformed name or digest, or credentials refused.
        """
        base = normalize_endpoint(endpoint)
        if not _REPOSITORY.fullmatch(repository) or not _DIGEST.fullmatch(digest):
            raise UpstreamRejected(f"not a valid repository and digest: {_quoted(repository)}@{_quoted(digest)}")

        async def run() -> DisconnectedPullCheck:
            async with self._new_client() as client:
                return await asyncio.wait_for(
                    self._check_pull(client, base, repository, digest, credentials), self._deadline
                )

        try:
            return asyncio.run(run())
        except TimeoutError as exc:
            raise UpstreamUnavailable(
                f"pull check of {repository}@{digest}: the deadline of {self._deadline:g} s passed"
            ) from exc

    async def _check_pull(
        self, client: httpx.AsyncClient, base: str, repository: str, digest: str, credentials: BasicCredentials | None
    ) -> DisconnectedPullCheck:
        def failed(detail: str) -> DisconnectedPullCheck:
            return DisconnectedPullCheck(repository, digest, DisconnectedPull.FAILED, detail)

        manifest = await self._manifest(client, base, repository, digest, credentials)
        if isinstance(manifest, str):
            return failed(manifest)
        children = manifest.get("manifests")
        if isinstance(children, list):
            child = next(
                (c.get("digest") for c in children if isinstance(c, dict) and isinstance(c.get("digest"), str)), None
            )
            if child is None or not _DIGEST.fullmatch(child):
                return failed("the index names no platform manifest")
            manifest = await self._manifest(client, base, repository, child, credentials)
            if isinstance(manifest, str):
                return failed(f"platform manifest {child}: {manifest}")
        config = manifest.get("config")
        blob = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(blob, str) or not _DIGEST.fullmatch(blob):
            return failed("the manifest names no config blob")
        url = f"{base}/v2/{repository}/blobs/{blob}"
        asked = _Asked(url, base, repository, blob, credentials, operation=f"HEAD {url}")
        with _translated(asked.operation):
            response, _ = await self._authenticated(client, asked, "HEAD")
        if response.status_code == 200:
            return DisconnectedPullCheck(repository, digest, DisconnectedPull.OK, None)
        if response.status_code == 404:
            return failed(f"blob {blob} is not served (404)")
        if response.status_code == 401:
            raise UpstreamRejected(f"{asked.operation}: credentials refused")
        raise _status_error(asked.operation, response)

    async def _manifest(
        self, client: httpx.AsyncClient, base: str, repository: str, digest: str, credentials: BasicCredentials | None
    ) -> dict[str, Any] | str:
        """The manifest's JSON, or why a pull would fail on it."""
        url = f"{base}/v2/{repository}/manifests/{digest}"
        asked = _Asked(url, base, repository, digest, credentials, operation=f"GET {url}")
        with _translated(asked.operation):
            response, body = await self._authenticated(client, asked, "GET")
        if response.status_code == 404:
            return "manifest not served (404)"
        if response.status_code == 401:
            raise UpstreamRejected(f"{asked.operation}: credentials refused")
        if response.status_code != 200:
            raise _status_error(asked.operation, response)
        algorithm, _, expected = digest.partition(":")
        if algorithm != "sha256" or hashlib.sha256(body).hexdigest() != expected:
            return "the manifest served does not hash to its digest"
        try:
            document = json.loads(body)
        except ValueError:
            return "the manifest is not JSON"
        return document if isinstance(document, dict) else "the manifest is not a JSON object"

    def _remembered_authorization(self, hint_key: tuple[str, str], credentials: BasicCredentials | None) -> str | None:
        """The answer to the challenge this repository's registry sent last time, if still good."""
        with self._lock:
            challenge = self._hints.get(hint_key)
            if challenge is None:
                return None
            if challenge.scheme == "basic":
                return _basic_authorization(credentials) if credentials is not None else None
            cached = self._tokens.get(_token_key(challenge, hint_key[1], credentials))
        if cached is None or cached.expires_at <= self._clock():
            return None
        return f"Bearer {cached.token}"

    def _forget(self, hint_key: tuple[str, str], credentials: BasicCredentials | None) -> None:
        with self._lock:
            challenge = self._hints.pop(hint_key, None)
            if challenge is not None and challenge.scheme == "bearer":
                self._tokens.pop(_token_key(challenge, hint_key[1], credentials), None)

    async def _bearer_authorization(self, client: httpx.AsyncClient, challenge: Challenge, asked: _Asked) -> str:
        key = _token_key(challenge, asked.repository, asked.credentials)
        now = self._clock()
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached.expires_at > now:
            return f"Bearer {cached.token}"
        token, lifetime = await self._fetch_token(client, key, asked)
        expires_at = now + lifetime - TOKEN_EXPIRY_MARGIN
        if expires_at > now:
            with self._lock:
                self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
                self._tokens[key] = _CachedToken(token, expires_at)
        return f"Bearer {token}"

    async def _fetch_token(self, client: httpx.AsyncClient, key: _TokenKey, asked: _Asked) -> tuple[str, timedelta]:
        """GET the realm for a token; the realm and its answer are the registry's, so both are checked.

        The site's credentials go only to a realm of the endpoint's own origin (what connected registries
        use), and over plain http only on loopback; another realm is asked anonymously.
        """
        base, credentials, operation = asked.base, asked.credentials, asked.operation
        if not key.realm:
            raise UpstreamRejected(f"{operation}: Bearer challenge without a realm")
        try:
            realm = httpx.URL(key.realm)
        except httpx.InvalidURL as exc:
            raise UpstreamRejected(f"{operation}: Bearer realm is not a valid URL") from exc
        if realm.scheme not in ("http", "https") or not realm.host:
            raise UpstreamRejected(f"{operation}: Bearer realm is not an http(s) URL: {_quoted(key.realm)}")
        if realm.scheme == "http" and base.startswith("https://"):
            raise UpstreamRejected(f"{operation}: Bearer realm {_quoted(realm.host)} must use https like the registry")
        withheld = credentials_withheld(key.realm, base, credentials.token_realms) if credentials is not None else None
        params: list[tuple[str, str | int | float | bool | None]] = []
        if key.service:
            params.append(("service", key.service))
        params.extend(("scope", scope) for scope in key.scope.split())
        headers = {"Accept": "application/json"}
        if credentials is not None and withheld is None:
            headers["Authorization"] = _basic_authorization(credentials)
        token_operation = (
            f"GET token from {realm.scheme}://{realm.netloc.decode('ascii')}{_quoted(realm.path, 80)[1:-1]}"
        )
        log.debug(
            "fetching a registry token",
            extra={"endpoint": base, "realm": key.realm[:200], "service": key.service[:200], "withheld": withheld},
        )
        with _translated(token_operation):
            async with client.stream("GET", realm, params=params, headers=headers) as response:
                if response.status_code in (401, 403):
                    if withheld is not None:
                        reason = f"credentials withheld ({withheld}), and it wants some"
                    else:
                        reason = "credentials refused" if credentials is not None else "credentials required"
                    raise UpstreamRejected(f"{operation}: token endpoint answered {response.status_code}: {reason}")
                if response.status_code != 200:
                    raise _status_error(token_operation, response)
                body = await _read_capped(response, MAX_TOKEN_ANSWER_BYTES, token_operation)
        return _token_from(body, token_operation)

    # -- answers -------------------------------------------------------------------------------

    def _present(self, response: httpx.Response, base: str, digest: str, operation: str) -> ManifestObservation:
        reported = response.headers.get("docker-content-digest")
        content_type = response.headers.get("content-type")
        media_type = content_type.split(";", 1)[0].strip() if content_type else None
        if reported is not None:
            reported = reported.strip()
            if len(reported) > MAX_DIGEST_LENGTH or not _DIGEST.fullmatch(reported):
                raise UpstreamRejected(f"{operation}: answered 200 with a malformed Docker-Content-Digest")
            if reported != digest:
                # A registry answering for another digest proves nothing about the one asked for.
                raise UpstreamRejected(f"{operation}: answered 200 for a different digest {_quoted(reported)}")
        if reported is None and media_type not in MANIFEST_MEDIA_TYPES:
            # Neither a digest nor a manifest type: a proxy or portal page, not a registry's answer.
            raise UpstreamRejected(
                f"{operation}: answered 200 without Docker-Content-Digest and with Content-Type {_quoted(media_type)}"
            )
        return ManifestObservation(
            outcome=ProbeOutcome.PRESENT,
            status_code=response.status_code,
            observed_at=self._clock(),
            endpoint=base,
            digest=reported,
            media_type=media_type or None,
        )


def credentials_withheld(target: str, endpoint: str, trusted: Iterable[str] = ()) -> str | None:
    """Why the site's credentials must not go to ``target``, or ``None`` when they may: only to the
    endpoint's own origin (scheme, host, port) or an origin the site's credentials list (``trusted``),
    and over plain http only to loopback."""
    try:
        to, site = httpx.URL(target), httpx.URL(endpoint)
        allowed = {_origin(site)} | {_origin(httpx.URL(origin)) for origin in trusted}
    except httpx.InvalidURL:
        return "not a valid URL"
    if to.scheme == "http" and not _is_loopback(to.host):
        return "plain http to a host that is not loopback"
    if _origin(to) not in allowed:
        return f"another origin than the site's {site.scheme}://{site.netloc.decode('ascii')}"
    return None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _read_capped(response: httpx.Response, limit: int, operation: str) -> bytes:
    """The body, read raw up to ``limit`` bytes; a larger or encoded one is refused unread."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UpstreamRejected(f"{operation}: the answer is encoded ({_quoted(encoding, 20)}), not plain")
    declared = response.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise UpstreamRejected(f"{operation}: the answer is larger than {limit // 1024} KiB")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise UpstreamRejected(f"{operation}: the answer is larger than {limit // 1024} KiB")
    return bytes(body)


def _token_from(body: bytes, operation: str) -> tuple[str, timedelta]:
    """The token and its lifetime from a token answer (the distribution token spec)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UpstreamRejected(f"{operation}: the answer is not UTF-8 text") from None
    try:
        document: Any = json.loads(text)
    except RecursionError:
        raise UpstreamRejected(f"{operation}: the answer's JSON is nested too deeply") from None
    except ValueError:
        raise UpstreamRejected(f"{operation}: the answer is not JSON") from None
    token = (document.get("token") or document.get("access_token")) if isinstance(document, dict) else None
    if (
        not isinstance(token, str)
        or not token
        or len(token) > MAX_TOKEN_ANSWER_BYTES
        or not token.isascii()
        or any(c.isspace() or not c.isprintable() for c in token)
    ):
        raise UpstreamRejected(f"{operation}: the answer carries no usable token")
    expires_in = document.get("expires_in")
    if expires_in is None:
        return token, DEFAULT_TOKEN_LIFETIME
    if (
        not isinstance(expires_in, int | float)
        or isinstance(expires_in, bool)
        or not math.isfinite(expires_in)
        or expires_in <= 0
    ):
        raise UpstreamRejected(f"{operation}: the answer's expires_in is not a positive number of seconds")
    # A registry may claim a token lives for ever; it is asked again after a day at most.
    return token, timedelta(seconds=min(float(expires_in), MAX_TOKEN_LIFETIME.total_seconds()))


def _quoted(value: object, limit: int = 60) -> str:
    """A value from the registry as it may appear in a message: printable ASCII, at most ``limit``
    characters, quoted."""
    text = "" if value is None else str(value)
    shown = "".join(c if c.isascii() and c.isprintable() else "?" for c in text[:limit])
    return repr(shown + ("..." if len(text) > limit else ""))


def _token_key(challenge: Challenge, repository: str, credentials: BasicCredentials | None) -> _TokenKey:
    # A challenge without a scope still needs pull access to the repository being probed.
    scope = challenge.params.get("scope") or f"repository:{repository}:pull"
    return _TokenKey(
        realm=challenge.params.get("realm", ""),
        service=challenge.params.get("service", ""),
        scope=scope,
        credentials=credentials,
    )


def _basic_authorization(credentials: BasicCredentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _ssl_verify(verify: bool | str) -> bool | ssl.SSLContext:
    # httpx 0.28 deprecates verify=<path>; a context built from the bundle is the supported form.
    if isinstance(verify, bool):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def _status_error(operation: str, response: httpx.Response) -> UpstreamUnavailable | UpstreamRejected:
    status = response.status_code
    if status in _RETRYABLE_STATUS or status >= 500:
        retry_after = response.headers.get("retry-after")
        hint = f" (Retry-After: {retry_after})" if retry_after and len(retry_after) <= 40 else ""
        return UpstreamUnavailable(f"{operation}: answered {status}{hint}")
    return UpstreamRejected(f"{operation}: answered {status}")


def _caused_by_certificate(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn every ``httpx`` exception raised inside into the acrsync tree, chained with ``from``.

    Messages name the operation and the exception class plus its text; ``httpx`` exception texts
    carry URLs and socket errors, never request headers.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamUnavailable(f"{operation}: timed out ({type(exc).__name__})") from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        raise UpstreamRejected(f"{operation}: request refused by the client ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        if _caused_by_certificate(exc):
            raise UpstreamRejected(f"{operation}: TLS certificate not trusted") from exc
        raise UpstreamUnavailable(f"{operation}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"{operation}: {type(exc).__name__}") from exc


class StaticSiteCredentials:
    """:class:`~shared.ports.SiteCredentials` from a fixed mapping site → credentials."""

    def __init__(self, credentials: Mapping[str, BasicCredentials] | None = None) -> None:
        self._credentials = dict(credentials or {})

    def get_credentials(self, site: str) -> BasicCredentials | None:
        return self._credentials.get(site)

    def __repr__(self) -> str:
        return f"StaticSiteCredentials(sites={sorted(self._credentials)!r})"

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> StaticSiteCredentials:
        """Read ``ACRSYNC_SITE_CREDENTIALS``: ``{"<site>": {"username": ..., "password": ...}}``.

        Unset or blank means no site has credentials.

        Raises:
            ConfigurationError: the value is not such an object. The message names the setting and,
                at most, the offending site; never the value.
        """
        environ = os.environ if env is None else env
        raw = environ.get(SITE_CREDENTIALS_SETTING, "").strip()
        if not raw:
            return cls()
        try:
            document = json.loads(raw)
        except ValueError:
            # ``from None``: the decoder's message quotes the document, which holds passwords.
            raise ConfigurationError(f"{SITE_CREDENTIALS_SETTING} is not valid JSON") from None
        if not isinstance(document, dict):
            raise ConfigurationError(f"{SITE_CREDENTIALS_SETTING} must be a JSON object keyed by site name")
        credentials: dict[str, BasicCredentials] = {}
        for site, entry in document.items():
            username = entry.get("username") if isinstance(entry, dict) else None
            password = entry.get("password") if isinstance(entry, dict) else None
            if not isinstance(username, str) or not username or not isinstance(password, str):
                raise ConfigurationError(
                    f'{SITE_CREDENTIALS_SETTING}: site {site!r} needs string "username" and "password"'
                )
            credentials[site] = BasicCredentials(username=username, password=password)
        return cls(credentials)
