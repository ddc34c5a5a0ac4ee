"""A recording stand-in for the Service Bus client at the narrowest seam: the adapter builds real
SDK messages and real ``ServiceBusMessageBatch``es (real AMQP encoding and size limits); only the
network send is replaced by recording the batch."""

from __future__ import annotations

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch

from shared.adapters.servicebus import ServiceBusJobQueue

STANDARD_BATCH_BYTES = 256 * 1024


class RecordingSender:
    def __init__(self, link_max_bytes: int) -> None:
        self.link_max_bytes = link_max_bytes
        self.batches: list[ServiceBusMessageBatch] = []
        self.messages: list[ServiceBusMessage] = []

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        return _Batch(self, max_size_in_bytes or self.link_max_bytes)

    def send_messages(self, batch: ServiceBusMessageBatch) -> None:
        self.batches.append(batch)
        self.messages.extend(batch.added)  # type: ignore[attr-defined]

    def close(self) -> None:
        pass


class _Batch(ServiceBusMessageBatch):
    def __init__(self, sender: RecordingSender, max_size_in_bytes: int) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message: ServiceBusMessage) -> None:  # type: ignore[override]
        super().add_message(message)
        self.added.append(message)


class RecordingServiceBus:
    """One recording sender shared by every thread's client."""

    def __init__(self, link_max_bytes: int = STANDARD_BATCH_BYTES) -> None:
        self.sender = RecordingSender(link_max_bytes)

    def get_queue_sender(self, queue_name: str) -> RecordingSender:
        return self.sender

    def close(self) -> None:
        pass

    def queue(self, queue_name: str = "site-sync") -> ServiceBusJobQueue:
        unused_credential: object = object()  # the recording client never authenticates
        return ServiceBusJobQueue(
            "acrsync-test.servicebus.windows.net",
            queue_name,
            unused_credential,
            client_factory=lambda: self,  # type: ignore[arg-type]
        )
