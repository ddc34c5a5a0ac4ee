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
        │   ├── ReleaseNotFound   no such release (the API's RELEASE_NOT_FOUND)
        │   ├── SiteNotFound      no such site (SITE_NOT_FOUND)
        │   ├── OutboxNotAvailable          events go to Event Grid, not the local outbox
        │   ├── SigningKeyNotConfigured     no receipt-signing key here
        │   └── UnknownFunction   the webhook names a function that is not this one
        ├── AlreadyExists         an insert-once write found the entity already there
        ├── InvalidInput          a bad event, request or file; carries a stable ``code``
        ├── Unauthenticated       no or wrong credentials
        ├── Forbidden             the caller lacks the app role a request needs
        │   └── CrossSiteRequest  a browser sent a state-changing request from another site
        ├── Unsupported           this instance does not offer what was asked (a dev route outside dev mode)
        ├── ConfigurationError    missing or contradictory settings; names the setting
        ├── IllegalTransition     the site-sync state machine refused a transition
        ├── EntityTooLarge        an entity or message exceeds the backend's size limit
        ├── StoreRejected         the state store refused a request for a non-transient reason
        ├── QueueRejected         the job queue refused a request for a non-transient reason
        └── UpstreamRejected      ARM, a site registry or Event Grid refused a request for good

Every error carries a stable ``code`` (the API's problem code and ``x-ms-error-code``) and a ``detail`` a
user may read; the message (``str(error)``) is for logs and may name internals such as an operation, so
only errors that are about the request itself (``InvalidInput``, the ``NotFound`` family, ...) put a
specific ``detail`` in front of users. :func:`http_answer` is the one mapping from this tree to HTTP.

Messages never carry secrets: adapters name the operation, never the connection string or token.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AcrSyncError",
    "AlreadyExists",
    "ConcurrencyConflict",
    "ConfigurationError",
    "CrossSiteRequest",
    "EntityTooLarge",
    "Forbidden",
    "HttpAnswer",
    "IllegalTransition",
    "InvalidInput",
    "NotFound",
    "OutboxNotAvailable",
    "PermanentError",
    "QueueRejected",
    "QueueUnavailable",
    "ReleaseNotFound",
    "SigningKeyNotConfigured",
    "SiteNotFound",
    "StoreRejected",
    "StoreUnavailable",
    "TransientError",
    "Unauthenticated",
    "UnknownFunction",
    "Unsupported",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "http_answer",
]


class AcrSyncError(Exception):
    """Base class of every error acrsync raises on purpose."""

    #: Stable and machine-readable: clients branch on it, never on ``detail``.
    code: str = "INTERNAL_ERROR"
    #: What a user may be told. Subclasses about the request itself set a specific one.
    detail: str = "an unexpected error occurred"


class TransientError(AcrSyncError):
    """A failure that may succeed when retried later (timeouts, throttling, 5xx, lost races)."""

    code = "BACKEND_UNAVAILABLE"
    detail = "a backend is unavailable; retry later"


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
    """The requested entity does not exist (an adapter's message names the lookup, for logs only)."""

    code = "NOT_FOUND"
    detail = "the resource does not exist"


class _Named(NotFound):
    """A missing resource the request named: its ``detail`` says which."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ReleaseNotFound(_Named):
    """No release with this id."""

    code = "RELEASE_NOT_FOUND"

    def __init__(self, release_id: str) -> None:
        super().__init__(f"release {release_id} does not exist")


class SiteNotFound(_Named):
    """No site with this name."""

    code = "SITE_NOT_FOUND"

    def __init__(self, site: str) -> None:
        super().__init__(f"site {site} does not exist")


class OutboxNotAvailable(_Named):
    """acrsync's events go to an Event Grid topic here, so there is no outbox to list."""

    code = "OUTBOX_NOT_AVAILABLE"

    def __init__(self) -> None:
        super().__init__("events are published to Event Grid; subscribe to the topic instead")


class SigningKeyNotConfigured(_Named):
    """No receipt-signing key (an Azure host without ``ACRSYNC_SIGNING_KEY``)."""

    code = "SIGNING_KEY_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__("delivery receipts are not signed here: ACRSYNC_SIGNING_KEY is not set")


class SiteReportsNotConfigured(_Named):
    """No site report secret (an Azure host without ``ACRSYNC_REPORT_SECRET``)."""

    code = "SITE_REPORTS_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__("site reports are not accepted here: ACRSYNC_REPORT_SECRET is not set")


class UnknownFunction(_Named):
    """The Event Grid webhook names a function this app does not have."""

    code = "UNKNOWN_FUNCTION"

    def __init__(self, name: str) -> None:
        super().__init__(f"no Event Grid function named {name[:64]!r}")


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


class Unauthenticated(PermanentError):
    """No or wrong credentials.

    Args:
        detail: what to send instead (never the expected value).
        scheme: the authentication scheme to name in ``WWW-Authenticate`` (``ApiKey``, ``Bearer``).
    """

    code = "UNAUTHENTICATED"

    def __init__(self, detail: str, *, scheme: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.scheme = scheme


class Forbidden(PermanentError):
    """The caller is known but lacks the app role the request needs."""

    code = "FORBIDDEN"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CrossSiteRequest(Forbidden):
    """A browser sent a state-changing request on behalf of another site's page."""

    code = "CROSS_SITE_REQUEST"


class Unsupported(PermanentError):
    """This instance does not offer what was asked (a local-runtime route in another mode).

    Args:
        code: a stable code (``NOT_SIMULATED``, ``NOT_REAL_REGISTRIES``).
        detail: how to get an instance that does.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ConfigurationError(PermanentError):
    """Settings are missing or contradict each other; the message names the setting (users of the API
    see only that the service is misconfigured)."""

    code = "MISCONFIGURED"
    detail = "the service is not configured correctly"


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


@dataclass(frozen=True)
class HttpAnswer:
    """How the API answers an error: status and problem title (code and detail come from the error)."""

    status: int
    title: str
    expected: bool  # False: a defect or an unclassified failure, logged with its traceback


# The nearest listed base class wins; anything else is an unexpected 500 whose detail stays generic.
_HTTP_ANSWERS: dict[type[AcrSyncError], HttpAnswer] = {
    InvalidInput: HttpAnswer(400, "Invalid input", expected=True),
    Unauthenticated: HttpAnswer(401, "Unauthenticated", expected=True),
    Forbidden: HttpAnswer(403, "Forbidden", expected=True),
    NotFound: HttpAnswer(404, "Not found", expected=True),
    Unsupported: HttpAnswer(409, "Not available here", expected=True),
    TransientError: HttpAnswer(503, "Backend unavailable", expected=True),
    ConfigurationError: HttpAnswer(503, "Service misconfigured", expected=True),
}
_UNEXPECTED = HttpAnswer(500, "Internal error", expected=False)


def http_answer(error: AcrSyncError) -> HttpAnswer:
    """The HTTP status and title for ``error`` (500 for kinds no request should ever cause)."""
    for kind in type(error).__mro__:
        answer = _HTTP_ANSWERS.get(kind)
        if answer is not None:
            return answer
    return _UNEXPECTED
