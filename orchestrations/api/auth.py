"""Who may call the HTTP API.

Two mechanisms, each on when configured, checked in this order:

1. **A local API key** (``ACRSYNC_API_KEY``): every protected route needs it in ``x-functions-key``
   or ``?code=`` — the names Azure Functions uses for function keys, so one client works against
   both. In Azure the Functions host checks its own function keys before the app runs.
2. **App Service Authentication** (Entra ID) puts the caller in ``X-MS-CLIENT-PRINCIPAL`` (base64
   JSON with ``claims``). The header is trusted only when the platform says authentication runs in front
   of the app (``WEBSITE_AUTH_ENABLED=True``, which App Service sets itself): anyone who can reach the app
   can send the header, and without the platform in between it is the caller's own claim. An untrusted
   header is ignored (logged once per process). When a trusted principal is present its app roles decide:
   reads need ``Status.Read`` (or ``Sync.Operate``), actions (any method but GET/HEAD/OPTIONS) need
   ``Sync.Operate``, else 403. ``ACRSYNC_REQUIRE_ROLES=true`` makes the principal mandatory (401
   without one). A malformed principal is refused with 401.

Protected: every ``/api/`` route except health, the OpenAPI document and the docs page. A site's reporter
posts to ``/api/sites/{site}/reports`` with that site's report token instead (the route checks it,
:mod:`shared.domain.site_tokens`): a token that reaches every site, like the API key, never leaves the
cloud. The Event
Grid webhook (``/runtime/webhooks/...``) needs the API key when one is configured, never a principal
(Event Grid cannot present one). Other paths are public. The key is compared in constant time and
never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from shared.bootstrap import get_services
from shared.config import APP_SERVICE_AUTH, Settings
from shared.errors import CrossSiteRequest, Forbidden, Unauthenticated

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/api/healthz", "/api/openapi.json", "/api/docs"})
API_PREFIX = "/api/"
WEBHOOK_PREFIX = "/runtime/webhooks/"
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
ROLE_CLAIM_TYPES = frozenset({"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
NAME_CLAIM_TYPES = ("name", "preferred_username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SITE_REPORT_PATH = re.compile(r"/api/sites/[^/]+/reports")
MAX_PRINCIPAL_BYTES = 16 * 1024
MAX_NAME_LENGTH = 256


class Role(StrEnum):
    STATUS_READ = "Status.Read"
    SYNC_OPERATE = "Sync.Operate"


@dataclass(frozen=True)
class Principal:
    """The caller as App Service Authentication describes it (only what acrsync uses)."""

    name: str | None
    roles: frozenset[str]

    def has(self, role: Role) -> bool:
        # Operators may read what they operate on.
        return role in self.roles or (role is Role.STATUS_READ and Role.SYNC_OPERATE in self.roles)


def decode_principal(header: str, name_header: str | None = None) -> Principal:
    """Decode ``X-MS-CLIENT-PRINCIPAL``.

    Raises:
        Unauthenticated: the header is not base64 JSON with a claims list.
    """
    try:
        if len(header) > MAX_PRINCIPAL_BYTES:
            raise ValueError("too large")
        raw = header.strip().encode("ascii")
        document = json.loads(base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True))
        if not isinstance(document, dict):
            raise ValueError("not an object")
        claims = document.get("claims")
        if not isinstance(claims, list):
            raise ValueError("no claims")
        pairs = [(claim["typ"], claim["val"]) for claim in claims]
        if not all(isinstance(typ, str) and isinstance(val, str) for typ, val in pairs):
            raise ValueError("claims are not strings")
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError, RecursionError) as exc:
        raise Unauthenticated("the X-MS-CLIENT-PRINCIPAL header is malformed", scheme="Bearer") from exc
    role_types = set(ROLE_CLAIM_TYPES)
    if isinstance(document.get("role_typ"), str):
        role_types.add(document["role_typ"])
    name_types = _name_types(document)
    roles = frozenset(val for typ, val in pairs if typ in role_types)
    name = next((val for wanted in name_types for typ, val in pairs if typ == wanted), None) or name_header
    return Principal(name=name[:MAX_NAME_LENGTH] if name else None, roles=roles)


def is_site_report(method: str, path: str) -> bool:
    """A site reporter's report: authenticated by its route with the site's report token."""
    return method.upper() == "POST" and _SITE_REPORT_PATH.fullmatch(path) is not None


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs, or ``None`` for a public path (the webhook and site reports need none either)."""
    if not path.startswith(API_PREFIX) or path in PUBLIC_PATHS or path.startswith("/api/docs/"):
        return None
    if is_site_report(method, path):
        return None
    return Role.STATUS_READ if method.upper() in SAFE_METHODS else Role.SYNC_OPERATE


def authorize(request: Request) -> Principal | None:
    """The app-wide dependency: check the request's credentials; the principal when there is one.

    Raises:
        Unauthenticated: no or wrong credentials (401).
        Forbidden: the principal lacks the route's app role (403).
        CrossSiteRequest: a browser sent a state-changing request from another site (403).
    """
    path = request.url.path
    settings = get_services().settings
    if request.method.upper() not in SAFE_METHODS:
        _refuse_cross_site(request)
    if path.startswith(WEBHOOK_PREFIX):
        _check_key(request, settings)
        return None
    role = required_role(request.method, path)
    if role is None:
        return None
    _check_key(request, settings)
    header = request.headers.get(PRINCIPAL_HEADER)
    if header is not None and not settings.app_service_auth:
        _ignore_untrusted_principal(request)
        header = None
    if header is None:
        if settings.require_roles:
            raise Unauthenticated("sign in: this API needs an Entra ID principal", scheme="Bearer")
        return None
    principal = decode_principal(header, request.headers.get(PRINCIPAL_NAME_HEADER))
    if not principal.has(role):
        raise Forbidden(f"this request needs the {role.value} app role")
    return principal


def _refuse_cross_site(request: Request) -> None:
    """A state-changing request a browser sent on behalf of another site's page is refused.

    Without a key the local API is open on loopback, and a page on any site could otherwise make the
    visitor's browser post to it (take a site offline, retry checks). Browsers say where a request comes
    from (``Sec-Fetch-Site``, ``Origin``); the CLI, Event Grid and other programs send neither and are
    not affected. ``Sec-Fetch-Site: none`` is a request the user made directly (typed or bookmarked).
    """
    fetch_site = (request.headers.get("sec-fetch-site") or "").strip().lower()
    if fetch_site and fetch_site not in {"same-origin", "none"}:
        raise CrossSiteRequest(f"a {fetch_site} request from a browser may not change anything here")
    origin = request.headers.get("origin")
    if origin is not None and _origin_of(origin) != _origin_of(str(request.base_url)):
        raise CrossSiteRequest("a request from another origin may not change anything here")


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return None  # "null" (a sandboxed page or a file) is no origin this app serves
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port or default
    except ValueError:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def _ignore_untrusted_principal(request: Request) -> None:
    """Log once per app (a process serves one) that the header is being ignored, and why."""
    state = request.app.state
    if not getattr(state, "untrusted_principal_logged", False):
        state.untrusted_principal_logged = True
        logger.warning(
            "ignoring %s: App Service Authentication is not enabled (%s), so the header is the caller's own claim",
            PRINCIPAL_HEADER,
            APP_SERVICE_AUTH,
        )


def _check_key(request: Request, settings: Settings) -> None:
    expected = settings.api_key
    if not expected:
        return
    offered = request.headers.get(KEY_HEADER) or request.query_params.get(KEY_QUERY)
    if offered is None or not hmac.compare_digest(
        offered.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    ):
        raise Unauthenticated(f"send the API key in the {KEY_HEADER} header", scheme="ApiKey")


def _name_types(document: dict[str, Any]) -> tuple[str, ...]:
    declared = document.get("name_typ")
    return ((declared,) if isinstance(declared, str) else ()) + NAME_CLAIM_TYPES
