"""Conditional reads: a strong ETag from the canonical JSON of a representation, and 304 on a match."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse


def etag_of(content: bytes) -> str:
    return '"' + hashlib.sha256(content).hexdigest()[:40] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter.
    if not if_none_match:
        return False
    candidates = [candidate.strip() for candidate in if_none_match.split(",")]
    return any(candidate == "*" or candidate.removeprefix("W/") == etag for candidate in candidates)


def conditional_json(
    body: Any, if_none_match: str | None, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """JSON with a strong ETag of its canonical form; 304 (no body) when If-None-Match matches."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    etag = etag_of(canonical.encode())
    answer_headers = {"ETag": etag, "Cache-Control": "no-cache", **(headers or {})}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=answer_headers)
    return JSONResponse(body, status_code=status_code, headers=answer_headers)
