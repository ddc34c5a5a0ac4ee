"""Conditional reads: strong ETags, 304 on a match, and every body serialized once.

Two ways to tag an answer: from stored versions, before the body is built (:func:`tagged_json`: a 304
then costs a version read), or from the serialized body itself (:func:`conditional_json`, for answers
no stored version describes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi import Response


def etag_of(content: bytes) -> str:
    return '"' + hashlib.sha256(content).hexdigest()[:40] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter.
    if not if_none_match:
        return False
    candidates = [candidate.strip() for candidate in if_none_match.split(",")]
    return any(candidate == "*" or candidate.removeprefix("W/") == etag for candidate in candidates)


def json_bytes(body: Any) -> bytes:
    """The one serialization of a JSON answer. Views are built in a fixed key order, so equal views
    are equal bytes without sorting."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _answer(content: bytes, etag: str, status_code: int, headers: dict[str, str] | None) -> Response:
    answer_headers = {"ETag": etag, "Cache-Control": "no-cache", **(headers or {})}
    return Response(content, status_code=status_code, media_type="application/json", headers=answer_headers)


def not_modified(etag: str, headers: dict[str, str] | None = None) -> Response:
    """304 for ``etag`` (a quoted tag), with the headers the full answer would carry."""
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache", **(headers or {})})


def conditional_json(
    body: Any, if_none_match: str | None, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """JSON with a strong ETag of its bytes; 304 (no body) when If-None-Match matches."""
    content = json_bytes(body)
    etag = etag_of(content)
    if etag_matches(if_none_match, etag):
        return not_modified(etag, headers)
    return _answer(content, etag, status_code, headers)


def tagged_json(
    tag: str,
    build: Callable[[], Any],
    if_none_match: str | None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """JSON tagged before it is built: ``tag`` must change whenever ``build()`` would answer differently.
    A match answers 304 without calling ``build``."""
    etag = f'"{tag}"'
    if etag_matches(if_none_match, etag):
        return not_modified(etag, headers)
    return _answer(json_bytes(build()), etag, status_code, headers)
