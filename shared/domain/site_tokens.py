"""Site report tokens: what a site's reporter presents to ``POST /api/sites/{site}/reports``.

A token is derived from one server secret and the site's name (HMAC-SHA256), so acrsync stores no
token per site, a token works for its own site only, and rotating the secret revokes every token
at once. It is sent as ``Authorization: Bearer <token>``; it is compared in constant time and
never logged. A site's reporter cannot read or change anything else with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

TOKEN_PREFIX = "acrsr1."  # noqa: S105 - the prefix that marks a report token
_CONTEXT = b"acrsync site report token v1\n"


def report_token(secret: bytes, site: str) -> str:
    """The report token of ``site`` under ``secret``."""
    mac = hmac.new(secret, _CONTEXT + site.encode(), hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_matches(secret: bytes, site: str, offered: str) -> bool:
    """Whether ``offered`` is ``site``'s token (constant time in the token's bytes)."""
    expected = report_token(secret, site).encode()
    return hmac.compare_digest(expected, offered.encode("utf-8", "surrogatepass"))
