"""The :class:`~shared.ports.JobQueue` port on Azure Service Bus (``azure-servicebus``, sync API).

Thread model: the sync SDK's client, senders, receivers and batches are not thread-safe, and the
Functions worker runs sync functions on a thread pool. Every thread therefore gets its own
``ServiceBusClient`` with its own sender and receivers, built on first use and kept for the thread's
life. A message must be settled on the thread that received it: settlement goes through the link
that delivered it, and that link belongs to the receiving thread.

Errors: SDK and azure-core exceptions are translated in one place (:meth:`ServiceBusJobQueue._errors`)
into the :mod:`shared.errors` tree. Messages name the operation and the queue, never the connection
string or a token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
    parse_connection_string,
)
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageNotFoundError,
    MessageSizeExceededError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusQuotaExceededError,
    ServiceBusServerBusyError,
    SessionLockLostError,
)

from shared.errors import (
    ConfigurationError,
    EntityTooLarge,
    InvalidInput,
    QueueRejected,
    QueueUnavailable,
)
from shared.ports import OutgoingMessage, PropertyValue, ReceivedMessage, SendReport

__all__ = ["ClientFactory", "ServiceBusJobQueue"]

logger = logging.getLogger(__name__)

ClientFactory = Callable[[], ServiceBusClient]
_SdkPropertyValue = int | float | bytes | bool | str | UUID

MAX_ID_LENGTH = 128  # Service Bus limit for MessageId and SessionId
CONTENT_TYPE = "application/json"

# receive_messages() refuses max_wait_time <= 0, and a wait of zero could never see a message over
# the network anyway; the port's "don't wait" (0.0) becomes this short poll.
_MIN_RECEIVE_WAIT_SECONDS = 1.0

# Broker-set application properties that ReceivedMessage carries as dedicated fields instead.
_DEAD_LETTER_KEYS = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})

# Retrying later can help: the network, a busy or throttling broker, a timeout.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ServiceBusConnectionError,
    OperationTimeoutError,
    ServiceBusServerBusyError,
    ServiceBusCommunicationError,
    # A full queue or namespace drains once consumers catch up; the SDK marks it non-retryable only
    # because an immediate retry would fail again.
    ServiceBusQuotaExceededError,
    ServiceRequestError,
    ServiceResponseError,
)
# Retrying cannot help: credentials, permissions, a missing or disabled entity (the SDK marks some
# of these retryable because the condition *can* change, but not without an operator), and locks
# that are gone for good.
_REJECTED: tuple[type[BaseException], ...] = (
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    MessagingEntityNotFoundError,
    MessagingEntityDisabledError,
    MessageLockLostError,
    SessionLockLostError,
    MessageNotFoundError,
    MessageAlreadySettled,
    ClientAuthenticationError,
)


@dataclass
class _Locked:
    """A received message and the receiver whose link must settle it."""

    receiver: ServiceBusReceiver
    message: ServiceBusReceivedMessage
    # A session receiver holds the session lock; it is closed once its message is settled so that
    # an idle thread never keeps a site's session from other consumers.
    owns_session: bool


@dataclass(eq=False)  # identity semantics: close() removes exactly this thread's entry
class _ThreadClients:
    """The SDK objects of one thread."""

    client: ServiceBusClient
    sender: ServiceBusSender | None = None
    receiver: ServiceBusReceiver | None = None
    dead_letter_receiver: ServiceBusReceiver | None = None
    locked: dict[str, _Locked] = field(default_factory=dict)
    closed: bool = False


class ServiceBusJobQueue:
    """A :class:`~shared.ports.JobQueue` on one Service Bus queue.

    Args:
        fully_qualified_namespace: ``<namespace>.servicebus.windows.net``.
        queue_name: the queue to send to and receive from.
        credential: a token credential (managed identity in Azure), built by the composition root.
        max_batch_bytes: cap for one send batch; ``None`` lets the link decide (256 KiB on
            Standard, 1 MiB on Premium).
        sessions: whether the queue requires sessions (``requiresSession`` is fixed at creation).
            Then every outgoing message must carry a session id, and receiving takes the next
            available session.
        retry_total: SDK-level retries per operation (the SDK default is 3).
        client_factory: builds one ``ServiceBusClient``; called once per thread. Defaults to the
            real SDK construction; tests pass a recording fake.

    Raises:
        ConfigurationError: an empty namespace or queue name, or a non-positive ``max_batch_bytes``.
    """

    def __init__(
        self,
        fully_qualified_namespace: str,
        queue_name: str,
        credential: TokenCredential,
        *,
        max_batch_bytes: int | None = None,
        sessions: bool = True,
        retry_total: int = 3,
        client_factory: ClientFactory | None = None,
    ) -> None:
        if not fully_qualified_namespace:
            raise ConfigurationError("Service Bus fully_qualified_namespace is empty")

        def build() -> ServiceBusClient:
            return ServiceBusClient(fully_qualified_namespace, credential, retry_total=retry_total)

        self._configure(
            queue_name,
            client_factory or build,
            max_batch_bytes=max_batch_bytes,
            sessions=sessions,
        )

    @classmethod
    def from_connection_string(
        cls,
        conn_str: str,
        queue_name: str,
        *,
        max_batch_bytes: int | None = None,
        sessions: bool = True,
        retry_total: int = 3,
    ) -> ServiceBusJobQueue:
        """A queue reached with a shared-access connection string (local development, emulators).

        Raises:
            ConfigurationError: the connection string is malformed or names another queue.
        """
        try:
            parsed = parse_connection_string(conn_str)
        except ValueError as exc:
            # The SDK's message does not echo the string, and neither does ours.
            raise ConfigurationError("the Service Bus connection string is malformed") from exc
        if parsed.entity_path and parsed.entity_path != queue_name:
            raise ConfigurationError(
                f"the Service Bus connection string is scoped to another entity than queue {queue_name!r}"
            )

        def build() -> ServiceBusClient:
            return ServiceBusClient.from_connection_string(conn_str, retry_total=retry_total)

        queue = cls.__new__(cls)
        queue._configure(queue_name, build, max_batch_bytes=max_batch_bytes, sessions=sessions)
        return queue

    def _configure(
        self,
        queue_name: str,
        client_factory: ClientFactory,
        *,
        max_batch_bytes: int | None,
        sessions: bool,
    ) -> None:
        if not queue_name:
            raise ConfigurationError("Service Bus queue_name is empty")
        if max_batch_bytes is not None and max_batch_bytes <= 0:
            raise ConfigurationError(f"max_batch_bytes must be positive, got {max_batch_bytes}")
        self._queue = queue_name
        self._client_factory = client_factory
        self._max_batch_bytes = max_batch_bytes
        self._sessions = sessions
        self._local = threading.local()  # sync SDK objects are not thread-safe: one set per thread
        self._all_lock = threading.Lock()
        self._all: list[_ThreadClients] = []  # every thread's clients, so close_all() reaches them

    def __repr__(self) -> str:
        return f"ServiceBusJobQueue(queue={self._queue!r}, sessions={self._sessions})"

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the calling thread's client with its sender and receivers (others keep theirs)."""
        clients: _ThreadClients | None = getattr(self._local, "clients", None)
        self._local.clients = None
        if clients is not None:
            with self._all_lock:
                if clients in self._all:
                    self._all.remove(clients)
            self._close_clients(clients)

    def close_all(self) -> None:
        """Close every thread's client (process shutdown). A later call builds fresh clients."""
        with self._all_lock:
            everything, self._all = self._all, []
        for clients in everything:
            self._close_clients(clients)

    def _close_clients(self, clients: _ThreadClients) -> None:
        # Flag first: the owning thread sees it and builds a fresh client on its next call.
        clients.closed = True
        clients.locked.clear()
        try:
            clients.client.close()  # closes the client's senders and receivers too
        except (AzureError, OSError) as exc:
            # Shutting down must not fail; the broker drops the links when the connection dies.
            logger.warning("closing the Service Bus client of queue %s failed: %s", self._queue, type(exc).__name__)

    def _clients(self) -> _ThreadClients:
        clients: _ThreadClients | None = getattr(self._local, "clients", None)
        if clients is None or clients.closed:
            clients = _ThreadClients(client=self._client_factory())
            self._local.clients = clients
            with self._all_lock:
                self._all.append(clients)
            logger.debug("built a Service Bus client for queue %s on thread %s", self._queue, threading.get_ident())
        return clients

    def _sender(self) -> ServiceBusSender:
        clients = self._clients()
        if clients.sender is None:
            clients.sender = clients.client.get_queue_sender(self._queue)
        return clients.sender

    # -- error translation -----------------------------------------------------------------------
    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Translate SDK exceptions into the acrsync tree; the one place this adapter does so."""
        try:
            yield
        except MessageSizeExceededError as exc:  # before _REJECTED: it is also a ValueError
            self._log_failure(operation, exc)
            raise EntityTooLarge(f"{operation}: a message exceeds the size limit of queue {self._queue!r}") from exc
        except _UNAVAILABLE as exc:
            self._log_failure(operation, exc)
            raise QueueUnavailable(self._describe(operation, exc)) from exc
        except _REJECTED as exc:
            self._log_failure(operation, exc)
            raise QueueRejected(self._describe(operation, exc)) from exc
        except ServiceBusError as exc:
            # Anything else: trust the SDK's own classification (kept in a private attribute; the
            # exceptions have no public accessor for it).
            self._log_failure(operation, exc)
            error = QueueUnavailable if getattr(exc, "_retryable", False) else QueueRejected
            raise error(self._describe(operation, exc)) from exc
        except AzureError as exc:
            # azure-core failures outside Service Bus (e.g. a token request) are transport trouble.
            self._log_failure(operation, exc)
            raise QueueUnavailable(self._describe(operation, exc)) from exc

    def _describe(self, operation: str, exc: BaseException) -> str:
        # The type name only: SDK texts can carry endpoints and are chained as __cause__ anyway.
        return f"Service Bus {operation} on queue {self._queue!r} failed ({type(exc).__name__})"

    def _log_failure(self, operation: str, exc: BaseException) -> None:
        logger.warning("Service Bus %s on queue %s failed: %s", operation, self._queue, type(exc).__name__)

    # -- sending ---------------------------------------------------------------------------------
    def send_messages(self, messages: Sequence[OutgoingMessage]) -> SendReport:
        """Send in as few batches as the link allows, in order.

        Every message is checked and packed before the first batch goes out, so a bad or oversize
        message changes nothing. A failure between batches leaves the earlier batches sent; resending
        everything is safe because duplicate detection drops the repeated message ids.

        Raises:
            InvalidInput: ``MESSAGE_ID_TOO_LONG`` (message or session id over 128 characters),
                ``MESSAGE_ID_MISSING`` (empty message id), ``SESSION_ID_REQUIRED`` (no session id
                on a session queue).
            EntityTooLarge: one message alone does not fit an empty batch.
            QueueUnavailable: transient failure; resend.
            QueueRejected: the queue refused (credentials, permissions, missing or disabled entity).
            ConfigurationError: ``max_batch_bytes`` exceeds what the link accepts.
        """
        if not messages:
            return SendReport(messages=0, batches=0)
        for message in messages:
            self._validate(message)
        sdk_messages = [self._to_sdk(message) for message in messages]

        with self._errors("send"):
            sender = self._sender()
            batches = self._pack(sender, sdk_messages, [m.message_id for m in messages])
            for number, batch in enumerate(batches, start=1):
                sender.send_messages(batch)
                logger.debug(
                    "sent batch %s/%s to queue %s: %s messages, %s bytes",
                    number,
                    len(batches),
                    self._queue,
                    len(batch),
                    batch.size_in_bytes,
                )
        return SendReport(messages=len(sdk_messages), batches=len(batches))

    def _validate(self, message: OutgoingMessage) -> None:
        if not message.message_id:
            raise InvalidInput("MESSAGE_ID_MISSING", "a message needs a message_id for duplicate detection")
        if len(message.message_id) > MAX_ID_LENGTH:
            raise InvalidInput(
                "MESSAGE_ID_TOO_LONG",
                f"message_id has {len(message.message_id)} characters; Service Bus allows {MAX_ID_LENGTH}",
            )
        if message.session_id is not None and len(message.session_id) > MAX_ID_LENGTH:
            raise InvalidInput(
                "MESSAGE_ID_TOO_LONG",
                f"session_id of message {message.message_id!r} has {len(message.session_id)} characters; "
                f"Service Bus allows {MAX_ID_LENGTH}",
            )
        if self._sessions and not message.session_id:
            # A session queue would accept it and dead-letter it ("Session ID is null").
            raise InvalidInput(
                "SESSION_ID_REQUIRED", f"message {message.message_id!r} has no session_id but the queue requires one"
            )

    @staticmethod
    def _to_sdk(message: OutgoingMessage) -> ServiceBusMessage:
        scheduled = message.scheduled_at
        if scheduled is not None and scheduled.tzinfo is None:
            # The SDK would read a naive datetime as local time; the Clock port speaks UTC.
            scheduled = scheduled.replace(tzinfo=UTC)
        # A comprehension rather than dict(): the SDK's parameter is an invariant dict of wider types.
        properties: dict[str | bytes, _SdkPropertyValue] = {key: value for key, value in message.properties.items()}
        return ServiceBusMessage(
            message.body,
            message_id=message.message_id,
            session_id=message.session_id,
            scheduled_enqueue_time_utc=scheduled,
            time_to_live=message.time_to_live,
            application_properties=properties or None,
            content_type=CONTENT_TYPE,
        )

    def _new_batch(self, sender: ServiceBusSender) -> ServiceBusMessageBatch:
        try:
            return sender.create_message_batch(max_size_in_bytes=self._max_batch_bytes)
        except ValueError as exc:
            if isinstance(exc, ServiceBusError):
                raise
            # The SDK refuses a cap above the link's limit with a plain ValueError.
            raise ConfigurationError(
                f"max_batch_bytes={self._max_batch_bytes} exceeds the batch limit of queue {self._queue!r}"
            ) from exc

    def _pack(
        self, sender: ServiceBusSender, messages: Sequence[ServiceBusMessage], ids: Sequence[str]
    ) -> list[ServiceBusMessageBatch]:
        """Greedy in-order packing: fills each batch until the next message does not fit.

        Order must be kept (FIFO per session), so batches are contiguous runs; for contiguous runs
        greedy filling gives the fewest batches.
        """
        batches = [self._new_batch(sender)]
        for message, message_id in zip(messages, ids, strict=True):
            if not self._try_add(batches[-1], message, message_id):
                batches.append(self._new_batch(sender))
                self._try_add(batches[-1], message, message_id)
        return batches

    def _try_add(self, batch: ServiceBusMessageBatch, message: ServiceBusMessage, message_id: str) -> bool:
        """Add ``message``; False when ``batch`` is full, EntityTooLarge when even an empty one is."""
        try:
            batch.add_message(message)
        except MessageSizeExceededError as exc:
            if len(batch) == 0:
                raise EntityTooLarge(
                    f"message {message_id!r} alone exceeds the batch size limit of queue {self._queue!r}"
                ) from exc
            return False
        return True

    # -- receiving -------------------------------------------------------------------------------
    def receive_messages(
        self, *, max_count: int = 1, max_wait: float = 0.0, dead_letter: bool = False
    ) -> list[ReceivedMessage]:
        """Lock and return up to ``max_count`` messages (peek-lock).

        On a session queue each message comes from its own session, taken with
        ``NEXT_AVAILABLE_SESSION`` and held until that message is settled — so messages of one
        session are delivered one at a time. The dead-letter sub-queue has no sessions.

        Raises:
            QueueUnavailable: transient failure (only when nothing was locked yet).
            QueueRejected: the queue refused (credentials, permissions, missing or disabled entity).
        """
        if max_count <= 0:
            return []
        wait = max(max_wait, _MIN_RECEIVE_WAIT_SECONDS)
        if self._sessions and not dead_letter:
            return self._receive_from_sessions(max_count, wait)
        clients = self._clients()
        with self._errors("receive"):
            receiver = self._plain_receiver(clients, dead_letter=dead_letter)
            received = receiver.receive_messages(max_message_count=max_count, max_wait_time=wait)
        return [self._lock(clients, receiver, message, owns_session=False) for message in received]

    def _plain_receiver(self, clients: _ThreadClients, *, dead_letter: bool) -> ServiceBusReceiver:
        if dead_letter:
            if clients.dead_letter_receiver is None:
                clients.dead_letter_receiver = clients.client.get_queue_receiver(
                    self._queue,
                    sub_queue=ServiceBusSubQueue.DEAD_LETTER,
                    receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                )
            return clients.dead_letter_receiver
        if clients.receiver is None:
            clients.receiver = clients.client.get_queue_receiver(
                self._queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK
            )
        return clients.receiver

    def _receive_from_sessions(self, max_count: int, wait: float) -> list[ReceivedMessage]:
        clients = self._clients()
        result: list[ReceivedMessage] = []
        while len(result) < max_count:
            try:
                with self._errors("receive"):
                    receiver = clients.client.get_queue_receiver(
                        self._queue,
                        session_id=NEXT_AVAILABLE_SESSION,
                        receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                        max_wait_time=wait,
                    )
                    try:
                        # One message per session: the next one waits until this one is settled.
                        received = receiver.receive_messages(max_message_count=1, max_wait_time=wait)
                    except OperationTimeoutError:
                        # No session with messages became available within the wait.
                        received = []
                    except BaseException:
                        self._close_receiver(receiver)
                        raise
            except (QueueUnavailable, QueueRejected):
                if not result:
                    raise
                # Messages already locked would be stranded until their locks expire; hand them over.
                break
            if not received:
                self._close_receiver(receiver)
                break
            result.append(self._lock(clients, receiver, received[0], owns_session=True))
        return result

    def _lock(
        self,
        clients: _ThreadClients,
        receiver: ServiceBusReceiver,
        message: ServiceBusReceivedMessage,
        *,
        owns_session: bool,
    ) -> ReceivedMessage:
        if message.lock_token is None:  # only RECEIVE_AND_DELETE messages lack one; we always peek-lock
            raise QueueRejected(f"Service Bus receive on queue {self._queue!r} returned a message without a lock")
        token = str(message.lock_token)
        clients.locked[token] = _Locked(receiver=receiver, message=message, owns_session=owns_session)
        locked_until = message.locked_until_utc
        if owns_session and receiver.session is not None:
            locked_until = receiver.session.locked_until_utc  # session messages are locked by the session
        return ReceivedMessage(
            message_id=str(message.message_id or ""),
            body=_body_bytes(message),
            # The SDK surfaces the raw AMQP header, which counts *prior* failed deliveries (0 on the
            # first one); Service Bus itself, .NET and the Functions binding count from 1.
            delivery_count=(message.delivery_count or 0) + 1,
            lock_token=token,
            session_id=message.session_id,
            enqueued_at=message.enqueued_time_utc,
            locked_until=locked_until,
            properties=_decode_properties(message.application_properties),
            dead_letter_reason=message.dead_letter_reason,
            dead_letter_description=message.dead_letter_error_description,
        )

    # -- settling --------------------------------------------------------------------------------
    def complete_message(self, message: ReceivedMessage) -> None:
        """Remove a locked message for good.

        Raises:
            QueueRejected: the lock is unknown to this thread (already settled, received on another
                thread or before a close) or was lost.
            QueueUnavailable: transient failure; the message will be redelivered when its lock expires.
        """
        self._settle(message, "complete", lambda r, m: r.complete_message(m))

    def abandon_message(self, message: ReceivedMessage) -> None:
        """Release the lock so the message is delivered again. Raises as :meth:`complete_message`."""
        self._settle(message, "abandon", lambda r, m: r.abandon_message(m))

    def dead_letter_message(self, message: ReceivedMessage, *, reason: str, description: str = "") -> None:
        """Move a locked message to the dead-letter sub-queue. Raises as :meth:`complete_message`."""
        self._settle(
            message,
            "dead-letter",
            lambda r, m: r.dead_letter_message(m, reason=reason, error_description=description or None),
        )

    def _settle(
        self,
        message: ReceivedMessage,
        operation: str,
        action: Callable[[ServiceBusReceiver, ServiceBusReceivedMessage], None],
    ) -> None:
        clients: _ThreadClients | None = getattr(self._local, "clients", None)
        # Popped before settling: after a failed settlement the link is suspect and the lock is as
        # good as lost, so the token must not be tried again; the broker redelivers on lock expiry.
        locked = clients.locked.pop(message.lock_token, None) if clients and not clients.closed else None
        if locked is None:
            raise QueueRejected(
                f"Service Bus {operation} on queue {self._queue!r}: lock token not held by this thread "
                "(already settled, received on another thread, or the client was closed)"
            )
        try:
            with self._errors(operation):
                action(locked.receiver, locked.message)
        finally:
            if locked.owns_session:
                # Release the session so the site's next job can be taken by any consumer.
                self._close_receiver(locked.receiver)
        logger.debug("%s message %s on queue %s", operation, message.message_id, self._queue)

    def _close_receiver(self, receiver: ServiceBusReceiver) -> None:
        try:
            receiver.close()
        except (AzureError, OSError) as exc:
            logger.warning("closing a Service Bus receiver of queue %s failed: %s", self._queue, type(exc).__name__)


def _body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    body = message.body
    if message.body_type == AmqpMessageBodyType.DATA:
        return body if isinstance(body, bytes) else b"".join(body)
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    # A value or sequence body was not sent by acrsync; pass a representation on so the job decoder
    # rejects it as malformed (and the message gets dead-lettered) instead of failing every receive.
    return repr(body).encode()


def _decode_properties(raw: Mapping[str | bytes, object] | None) -> dict[str, PropertyValue]:
    """Received application properties arrive with bytes keys and bytes string values."""
    properties: dict[str, PropertyValue] = {}
    for key, value in (raw or {}).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name in _DEAD_LETTER_KEYS:
            continue
        if isinstance(value, bytes):
            properties[name] = value.decode(errors="replace")
        elif isinstance(value, str | int | float | bool):
            properties[name] = value
        elif isinstance(value, datetime):
            properties[name] = value.isoformat()
        else:
            properties[name] = str(value)
    return properties
