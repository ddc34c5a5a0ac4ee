"""The one exception tree of acrsync.

Every error raised by acrsync code derives from :class:`AcrSyncError`. Adapters translate SDK and
driver exceptions into this tree at a single point each, so no raw SDK exception escapes an adapter.

    AcrSyncError
    ├── TransientError            retry later: a trigger re-raises, Service Bus redelivers (then dead-letters)
    │   ├── StoreUnavailable      state store unreachable, throttled (429) or failing (5xx)
    │   ├── QueueUnavailable      job queue unreachable, throttled or failing
    │   ├── UpstreamUnavailable   ARM, a site registry or Event Grid unreachable, throttled or failing
    │   └── ConcurrencyConflict   an ETag precondition failed: another writer won; re-read and retry
    └── PermanentError            retrying cannot help: record the failure, complete the message
        ├── NotFound              the entity does not exist
        ├── AlreadyExists         an insert-once write found the entity already there
        ├── InvalidInput          a bad event, request or file; carries a stable ``code``
        ├── ConfigurationError    missing or contradictory settings; names the setting
        ├── IllegalTransition     the site-sync state machine refused a transition
        ├── EntityTooLarge        an entity or message exceeds the backend's size limit
        ├── StoreRejected         the state store refused a request for a non-transient reason
        ├── QueueRejected         the job queue refused a request for a non-transient reason
        └── UpstreamRejected      ARM, a site registry or Event Grid refused a request for good

Messages never carry secrets: adapters name the operation, never the connection string or token.
"""

from __future__ import annotations

__all__ = [
    "AcrSyncError",
    "AlreadyExists",
    "ConcurrencyConflict",
    "ConfigurationError",
    "EntityTooLarge",
    "IllegalTransition",
    "InvalidInput",
    "NotFound",
    "PermanentError",
    "QueueRejected",
    "QueueUnavailable",
    "StoreRejected",
    "StoreUnavailable",
    "TransientError",
    "UpstreamRejected",
    "UpstreamUnavailable",
]


class AcrSyncError(Exception):
    """Base class of every error acrsync raises on purpose."""


class TransientError(AcrSyncError):
    """A failure that may succeed when retried later (timeouts, throttling, 5xx, lost races)."""


class PermanentError(AcrSyncError):
    """A failure that retrying cannot fix; the caller records it and moves on."""


class StoreUnavailable(TransientError):
    """The state store could not be reached or answered with a retryable status."""


class QueueUnavailable(TransientError):
    """The job queue could not be reached or answered with a retryable status."""


class UpstreamUnavailable(TransientError):
    """ARM, a site's registry or Event Grid could not be reached or answered with a retryable status."""


class ConcurrencyConflict(TransientError):
    """An optimistic-concurrency precondition failed: the entity changed since it was read."""


class NotFound(PermanentError):
    """The requested entity does not exist."""


class AlreadyExists(PermanentError):
    """An insert-once write found the entity already present (callers treat it as idempotent success)."""


class InvalidInput(PermanentError):
    """Input that can never be processed: a malformed event, request, sites file or job.

    Args:
        code: a stable, machine-readable code (``INVALID_DIGEST``, ``MALFORMED_JSON``, ...).
        detail: a human-readable explanation that never echoes secrets.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ConfigurationError(PermanentError):
    """Settings are missing or contradict each other; the message names the setting."""


class IllegalTransition(PermanentError):
    """The site-sync state machine refused a transition; the message names both states."""


class EntityTooLarge(PermanentError):
    """An entity or message is larger than the backend accepts."""


class StoreRejected(PermanentError):
    """The state store refused the request for a reason retrying cannot fix."""


class QueueRejected(PermanentError):
    """The job queue refused the request for a reason retrying cannot fix."""


class UpstreamRejected(PermanentError):
    """ARM, a site's registry or Event Grid refused the request for a reason retrying cannot fix."""
