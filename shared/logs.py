"""Per-invocation log context: bind ids once, and every log line of that invocation carries them.

Keys are flat (``release_id``, ``digest``, ``site``, ``event_id``, ``message_id``) so Application
Insights turns them into ``customDimensions``. Never bind secrets.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("acrsync_log_context", default=None)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Bind ``fields`` for the duration of the block (nested blocks add to, then restore, the outer ones)."""
    token = _context.set({**(_context.get() or {}), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (as attributes, which ``extra`` consumers read)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True
