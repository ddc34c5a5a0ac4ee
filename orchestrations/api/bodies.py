"""Request bodies read with a cap: a body is read only as far as its limit, whatever it declares."""

from __future__ import annotations

from fastapi import Request

from shared.errors import InvalidInput


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The request body, or ``BATCH_TOO_LARGE`` as soon as more than ``limit`` bytes arrive.

    ``Content-Length`` is checked first; a chunked body (no length) is read until the limit and no further.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidInput("BATCH_TOO_LARGE", f"the limit is {limit} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise InvalidInput("BATCH_TOO_LARGE", f"the limit is {limit} bytes")
    return bytes(received)
