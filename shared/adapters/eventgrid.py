"""The :class:`~shared.ports.EventSink` port on an Event Grid custom topic (``azure-eventgrid``, sync API).

Events go out as CloudEvents 1.0 with their deterministic ids, so a re-published event carries the
id subscribers already saw. A publish is split greedily into requests that stay under Event Grid's
1 MB request limit; every event is converted and sized before the first request, so a bad or
oversize event fails the call with nothing sent. When a later request fails, the earlier ones have
been delivered; the caller re-publishes everything and subscribers dedupe on the ids.

Thread model: ``EventGridPublisherClient`` runs on azure-core's ``RequestsTransport``, which its
docstring says not to treat as thread-safe (one ``requests.Session`` per instance). Every thread
therefore gets its own client, built on first use and kept until :meth:`EventGridEventSink.close`.

Errors: SDK and azure-core exceptions are translated in one place (:meth:`EventGridEventSink._errors`).
Messages name the topic host and the HTTP status, never the key or a token.

SDK quirks (``azure-eventgrid`` 4.22.1), each handled below:

* The basic-tier client drops constructor keyword arguments, so retry and timeout settings can only
  be passed per ``send`` call.
* Every per-call keyword argument is also handed to the generated CloudEvent model of each event,
  which logs "... is not a known attribute ... and will be ignored" once per event and argument;
  :class:`_KnownSendOptionsFilter` drops exactly those records for the options this adapter passes.
* ``enforce_https`` is consumed only by the bearer-token policy; with an ``AzureKeyCredential`` it
  reaches ``requests`` and fails with ``TypeError``, so it is passed only with token credentials.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient

from shared.domain.observations import OutboundEvent
from shared.errors import ConfigurationError, EntityTooLarge, UpstreamRejected, UpstreamUnavailable

__all__ = ["MAX_REQUEST_BYTES", "EventGridEventSink"]

logger = logging.getLogger(__name__)

# Event Grid refuses a publish request (and a single event) over 1 MB with 413. The decimal reading
# of "1 MB" is the smaller one, so batches that fit it fit either reading.
MAX_REQUEST_BYTES = 1_000_000
# The SDK's CloudEventDistributedTracingPolicy copies the W3C ``traceparent`` (55 characters) and
# ``tracestate`` (up to 512) headers into every event when tracing is on, after this adapter sized
# the batch; reserve room for both on every event.
_TRACING_BYTES = len(', "traceparent": ""') + 55 + len(', "tracestate": ""') + 512
_ARRAY_BYTES = len("[]")
_SEPARATOR_BYTES = len(", ")  # json.dumps' default item separator, which the SDK uses
_DEFAULT_RETRY_TOTAL = 3
_DEFAULT_TIMEOUT_S = 30.0
# Statuses worth retrying later: throttling, timeouts, server trouble, and 401/403, which right after
# a deployment usually means the role assignment has not propagated yet.
_TRANSIENT_STATUSES = frozenset({401, 403, 408, 429})
_TOO_LARGE = 413
_SDK_SERIALIZATION_LOGGER = "azure.eventgrid._legacy._generated._serialization"


class _KnownSendOptionsFilter(logging.Filter):
    """Drops the SDK's per-event "not a known attribute" warnings about options this adapter passes
    on purpose (see the module docstring); any other record, including that warning about another
    name, goes through."""

    OPTIONS = frozenset({"enforce_https", "retry_total", "connection_timeout", "read_timeout"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            isinstance(record.msg, str)
            and record.msg.startswith("%s is not a known attribute of class")
            and isinstance(args, tuple)
            and bool(args)
            and args[0] in self.OPTIONS
        )


def _install_sdk_log_filter() -> None:
    sdk_logger = logging.getLogger(_SDK_SERIALIZATION_LOGGER)
    if not any(isinstance(f, _KnownSendOptionsFilter) for f in sdk_logger.filters):
        sdk_logger.addFilter(_KnownSendOptionsFilter())


_install_sdk_log_filter()


def _status_of(exc: HttpResponseError) -> int | None:
    """The HTTP status behind ``exc``. The SDK re-raises a 404 as a new ResourceNotFoundError
    without a response (its hint about namespace topics), chained to the original error."""
    seen: BaseException | None = exc
    while seen is not None:
        status = getattr(seen, "status_code", None)
        if isinstance(status, int):
            return status
        seen = seen.__cause__
    return None


class EventGridEventSink:
    """Publishes :class:`OutboundEvent` values to one Event Grid custom topic as CloudEvents.

    Args:
        endpoint: the topic endpoint, ``https://<topic>.<region>-1.eventgrid.azure.net/api/events``.
        credential: an ``AzureKeyCredential`` (sent as ``aeg-sas-key``) or a token credential
            (sent as ``Authorization: Bearer``; needs the EventGrid Data Sender role).
        enforce_https: refuse a non-TLS endpoint. Only loopback tests turn it off.
        retry_total: retries the SDK makes per request (it retries 500/503/504, throttling with
            ``Retry-After``, and connection failures); the caller retries the rest later.
        timeout: connect and read timeout per attempt, in seconds (the SDK default is 300).

    Raises:
        ConfigurationError: an empty or non-https endpoint (unless ``enforce_https`` is off), an
            unsupported credential, or a negative retry count or non-positive timeout.
    """

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential | AzureKeyCredential,
        *,
        enforce_https: bool = True,
        retry_total: int = _DEFAULT_RETRY_TOTAL,
        timeout: float = _DEFAULT_TIMEOUT_S,
    ) -> None:
        parts = urlsplit(endpoint or "")
        if parts.scheme not in {"https", "http"} or not parts.netloc:
            raise ConfigurationError("the Event Grid topic endpoint must be an absolute https URL")
        if parts.scheme != "https" and enforce_https:
            # Over plain HTTP the key or token would travel in clear text.
            raise ConfigurationError("the Event Grid topic endpoint must use https")
        token_auth = hasattr(credential, "get_token")
        if not token_auth and not isinstance(credential, AzureKeyCredential):
            raise ConfigurationError("the Event Grid credential must be a token credential or an AzureKeyCredential")
        if retry_total < 0:
            raise ConfigurationError(f"Event Grid retry_total must not be negative, got {retry_total}")
        if timeout <= 0:
            raise ConfigurationError(f"Event Grid timeout must be positive, got {timeout}")
        self._endpoint = endpoint
        # Host and port only: messages and logs must not repeat userinfo an endpoint might carry.
        self._host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        self._credential = credential
        self._send_options: dict[str, Any] = {
            "retry_total": retry_total,
            "connection_timeout": timeout,
            "read_timeout": timeout,
        }
        if token_auth and not enforce_https:
            self._send_options["enforce_https"] = False
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[EventGridPublisherClient] = []
        self._closed = False

    # -- EventSink -------------------------------------------------------------------------------
    def publish(self, events: Sequence[OutboundEvent]) -> None:
        """Send ``events`` in as few requests as the 1 MB limit allows, in the given order.

        Raises:
            EntityTooLarge: one event alone exceeds the request limit (nothing was sent).
            UpstreamRejected: an event cannot be serialized as JSON (nothing was sent), or Event Grid
                refused a request for good (400, 404, ...).
            UpstreamUnavailable: Event Grid is unreachable, throttled, failing, or not yet authorizing.
        """
        if not events:
            return
        batches = self._batches(events)
        client = self._client()
        for number, batch in enumerate(batches, start=1):
            with self._errors(len(batch), number, len(batches)):
                client.send(batch, **self._send_options)
        logger.debug("published %d events to %s in %d requests", len(events), self._host, len(batches))

    def close(self) -> None:
        """Close every thread's client; the sink is not used afterwards."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except (AzureError, OSError) as exc:
                # Shutting down must not fail; the sockets go with the process anyway.
                logger.warning("closing an Event Grid client for %s failed: %s", self._host, type(exc).__name__)

    # -- batching --------------------------------------------------------------------------------
    def _batches(self, events: Sequence[OutboundEvent]) -> list[list[CloudEvent[Any]]]:
        """Convert and size every event, then pack them greedily in order."""
        batches: list[list[CloudEvent[Any]]] = []
        current: list[CloudEvent[Any]] = []
        used = _ARRAY_BYTES
        for event in events:
            cloud_event, size = self._convert(event)
            if _ARRAY_BYTES + size > MAX_REQUEST_BYTES:
                raise EntityTooLarge(
                    f"event {event.event_id!r} takes about {size} bytes; an Event Grid request allows"
                    f" {MAX_REQUEST_BYTES}"
                )
            needed = size + (_SEPARATOR_BYTES if current else 0)
            if current and used + needed > MAX_REQUEST_BYTES:
                batches.append(current)
                current, used, needed = [], _ARRAY_BYTES, size
            current.append(cloud_event)
            used += needed
        if current:
            batches.append(current)
        return batches

    @staticmethod
    def _convert(event: OutboundEvent) -> tuple[CloudEvent[Any], int]:
        """The CloudEvent to send and an upper bound of its size in the request body."""
        # The SDK would silently treat a naive time as UTC (with a log warning); say so explicitly.
        time = event.time if event.time.tzinfo is not None else event.time.replace(tzinfo=UTC)
        data = dict(event.data)
        envelope = {
            "id": event.event_id,
            "source": event.source,
            "data": data,
            "type": event.type.value,
            # isoformat() is never shorter than the SDK's "...Z" form, so the estimate stays an upper bound.
            "time": time.isoformat(),
            "specversion": "1.0",
            "subject": event.subject,
        }
        try:
            # The SDK writes the body with json.dumps' defaults (ASCII escapes, ", " and ": "), so
            # this measures what goes on the wire; NaN is refused because Event Grid would be.
            size = len(json.dumps(envelope, allow_nan=False).encode("ascii"))
        except (TypeError, ValueError) as exc:
            raise UpstreamRejected(f"event {event.event_id!r} has data that is not JSON") from exc
        cloud_event: CloudEvent[Any] = CloudEvent(
            source=event.source,
            type=event.type.value,
            data=data,
            subject=event.subject,
            time=time,
            id=event.event_id,
        )
        return cloud_event, size + _TRACING_BYTES

    # -- clients ---------------------------------------------------------------------------------
    def _client(self) -> EventGridPublisherClient:
        client: EventGridPublisherClient | None = getattr(self._local, "client", None)
        if client is not None and not self._closed:
            return client
        with self._lock:
            if self._closed:
                raise UpstreamRejected(f"the Event Grid sink for {self._host} is closed")
            client = EventGridPublisherClient(self._endpoint, self._credential)
            self._clients.append(client)
        self._local.client = client
        logger.debug("built an Event Grid client for %s on thread %s", self._host, threading.get_ident())
        return client

    # -- error translation -----------------------------------------------------------------------
    @contextmanager
    def _errors(self, count: int, number: int, of: int) -> Iterator[None]:
        """Translate SDK exceptions into the acrsync tree; the one place this adapter does so."""
        what = f"Event Grid publish of {count} events to {self._host} (request {number} of {of})"
        try:
            yield
        except HttpResponseError as exc:
            # Includes ClientAuthenticationError: a 401 answer, or a credential that failed to get a
            # token (no status at all), which is transient too.
            status = _status_of(exc)
            described = f"{what} failed (HTTP {status})" if status else f"{what} failed ({type(exc).__name__})"
            logger.warning("%s", described)
            if status == _TOO_LARGE:
                raise EntityTooLarge(described) from exc
            if status is None or status >= 500 or status in _TRANSIENT_STATUSES:
                raise UpstreamUnavailable(described) from exc
            raise UpstreamRejected(described) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            described = f"{what} failed ({type(exc).__name__})"
            logger.warning("%s", described)
            raise UpstreamUnavailable(described) from exc
        except AzureError as exc:
            # Any other azure-core failure (too many redirects, a stream error) is transport trouble.
            described = f"{what} failed ({type(exc).__name__})"
            logger.warning("%s", described)
            raise UpstreamUnavailable(described) from exc
