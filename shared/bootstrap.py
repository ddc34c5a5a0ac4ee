"""The composition root: the only place adapters are built.

Triggers, the local runtime and the CLI reach the process-wide :class:`Services` through
:func:`get_services`; nothing is built at import time, and each adapter is built on first use,
once per process (the Service Bus adapter then keeps one sender per thread itself). Tests call
:func:`bootstrap` with their own adapters instead of patching module globals.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from shared.config import SIGNING_KEY, QueueBackend, Settings, StoreBackend, arm_endpoint_url
from shared.ports import (
    ArmInventory,
    Clock,
    ClusterHealthReader,
    ConnectedRegistryReader,
    EventSink,
    JobQueue,
    ManifestProbe,
    Outbox,
    ReleaseContentReader,
    SiteCredentials,
    StateStore,
    WorkloadObserver,
)
from shared.services.catalog import SiteCatalog
from shared.services.token_findings import TokenFindings

if TYPE_CHECKING:
    from shared.domain.receipts import ReceiptSigner

T = TypeVar("T")
logger = logging.getLogger(__name__)


class SystemClock:
    """Wall-clock UTC time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class _Lazy:
    """Builds a value on first access, once, even when several threads ask at the same time."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._value: Any = None
        self._built = False
        self._lock = threading.Lock()

    def get(self) -> Any:
        if not self._built:
            with self._lock:
                if not self._built:
                    self._value = self._factory()
                    self._built = True
        return self._value

    @property
    def built(self) -> bool:
        return self._built


class Services:
    """The adapters one process uses, built lazily from one :class:`Settings`; it satisfies the
    :class:`~shared.services.dependencies.Dependencies` every use case takes."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: StateStore | None = None,
        queue: JobQueue | None = None,
        clock: Clock | None = None,
        arm: ConnectedRegistryReader | None = None,
        probe: ManifestProbe | None = None,
        credentials: SiteCredentials | None = None,
        events: EventSink | None = None,
        signer: ReceiptSigner | None = None,
        workload_observer: WorkloadObserver | None = None,
        cluster_health: ClusterHealthReader | None = None,
        content_reader: ReleaseContentReader | None = None,
        credential: Any = None,
    ) -> None:
        self.settings = settings
        self._credential = _Lazy(lambda: credential if credential is not None else _build_credential(settings))
        self._store = _Lazy(lambda: store if store is not None else _build_store(settings, self._credential))
        self._queue = _Lazy(
            lambda: queue if queue is not None else _build_queue(settings, self._credential, self.clock)
        )
        self.clock: Clock = clock or SystemClock()
        self._catalog = _Lazy(lambda: SiteCatalog(self.store, self.clock))
        self._arm = _Lazy(lambda: arm if arm is not None else _build_arm(settings, self._credential, self.clock))
        self._probe = _Lazy(lambda: probe if probe is not None else _build_probe())
        self._credentials = _Lazy(lambda: credentials if credentials is not None else _build_credentials(settings))
        self._events = _Lazy(lambda: events if events is not None else _build_events(settings, self._credential))
        self._signer = _Lazy(lambda: signer if signer is not None else _build_signer(settings))
        self._report_secret = _Lazy(lambda: _build_report_secret(settings))
        self._workload_observer = _Lazy(
            lambda: workload_observer if workload_observer is not None else _build_observer(self._credential)
        )
        self._given_cluster_health = cluster_health
        self._cluster_health = _Lazy(
            lambda: cluster_health if cluster_health is not None else _build_cluster_health(settings, self._credential)
        )
        self._content_reader = _Lazy(
            lambda: content_reader if content_reader is not None else _build_content_reader(settings, self._credential)
        )
        self.token_findings = TokenFindings()

    @property
    def store(self) -> StateStore:
        value: StateStore = self._store.get()
        return value

    @property
    def queue(self) -> JobQueue:
        value: JobQueue = self._queue.get()
        return value

    @property
    def catalog(self) -> SiteCatalog:
        """Sites as ingest sees them (cached briefly; see :mod:`shared.services.catalog`)."""
        value: SiteCatalog = self._catalog.get()
        return value

    @property
    def arm(self) -> ConnectedRegistryReader:
        value: ConnectedRegistryReader = self._arm.get()
        return value

    @property
    def probe(self) -> ManifestProbe:
        value: ManifestProbe = self._probe.get()
        return value

    @property
    def content_reader(self) -> ReleaseContentReader | None:
        value: ReleaseContentReader | None = self._content_reader.get()
        return value

    @property
    def credentials(self) -> SiteCredentials:
        value: SiteCredentials = self._credentials.get()
        return value

    @property
    def events(self) -> EventSink:
        value: EventSink = self._events.get()
        return value

    @property
    def workload_observer(self) -> WorkloadObserver:
        """Container Insights through Log Analytics (built only when a site names a workspace or cluster)."""
        value: WorkloadObserver = self._workload_observer.get()
        return value

    @property
    def cluster_health(self) -> ClusterHealthReader:
        """The Arc cluster and its connected registry extension through ARM."""
        value: ClusterHealthReader = self._cluster_health.get()
        return value

    @property
    def signer(self) -> ReceiptSigner | None:
        """What signs delivery receipts: ``ACRSYNC_SIGNING_KEY``; locally without it, a key kept in the
        data dir (created on first use); ``None`` in Azure without it (receipts are then skipped)."""
        value: ReceiptSigner | None = self._signer.get()
        return value

    @property
    def report_secret(self) -> bytes | None:
        """What site report tokens derive from: ``ACRSYNC_REPORT_SECRET``; locally without it, a secret
        kept in the data dir (created on first use); ``None`` in Azure without it (reports are refused)."""
        value: bytes | None = self._report_secret.get()
        return value

    @property
    def outbox(self) -> Outbox | None:
        """The local outbox when events stay local (no Event Grid topic configured)."""
        sink = self.events
        return sink if hasattr(sink, "list_events") else None  # type: ignore[return-value]

    @contextmanager
    def open_arm_inventory(self, endpoint: str | None = None) -> Iterator[ArmInventory]:
        """The ARM adapter for governance commands (preflight, discovery): the registry, its connected
        registries, their tokens and scope maps, read with this process's credential and closed afterwards.
        It retries once (a command answers now or says ARM is unreachable) and caches nothing.

        Args:
            endpoint: an ARM endpoint other than the settings' (``https://``; ``http://`` only on loopback).

        Raises:
            ConfigurationError: ``endpoint`` is neither.
        """
        from shared.adapters.arm import ArmConnectedRegistryReader

        reader = ArmConnectedRegistryReader(self._credential.get(), retry_total=1, **self._command_arm(endpoint))
        try:
            yield reader
        finally:
            reader.close()

    @contextmanager
    def open_cluster_health(self, endpoint: str | None = None) -> Iterator[ClusterHealthReader]:
        """The Arc health reader for preflight, on ``endpoint`` (as :meth:`open_arm_inventory`), closed
        afterwards; the reader given to :func:`bootstrap` when there is one."""
        if self._given_cluster_health is not None:
            yield self._given_cluster_health
            return
        from shared.adapters.arc import ArcHealthReader

        reader = ArcHealthReader(self._credential.get(), retry_total=1, **self._command_arm(endpoint))
        try:
            yield reader
        finally:
            reader.close()

    def _command_arm(self, endpoint: str | None) -> dict[str, Any]:
        """ARM for a command: ``endpoint`` (``https://``; ``http://`` only on loopback) or the settings'."""
        base_url = arm_endpoint_url(endpoint) if endpoint else self.settings.arm_endpoint
        return {"base_url": base_url, "enforce_https": base_url is None or urlsplit(base_url).scheme == "https"}

    def close(self) -> None:
        """Close what was built (adapters that were never used are not built just to be closed)."""
        for lazy in (
            self._events,
            self._probe,
            self._arm,
            self._workload_observer,
            self._cluster_health,
            self._queue,
            self._store,
            self._credential,
        ):
            if lazy.built:
                closer = getattr(lazy.get(), "close_all", None) or getattr(lazy.get(), "close", None)
                if closer is not None:
                    closer()


def bootstrap(settings: Settings | None = None, **adapters: Any) -> Services:
    """Wire acrsync's services; adapters not given (``store``, ``queue``, ``clock``, ``arm``,
    ``probe``, ``credentials``, ``events``, ``signer``, ``workload_observer``, ``cluster_health``,
    and the Azure ``credential``) are built from
    ``settings`` on first use.

    Raises:
        ConfigurationError: the environment's settings are missing or contradictory.
    """
    return Services(settings or Settings.from_environ(os.environ), **adapters)


_process_services: Services | None = None
_process_lock = threading.Lock()


def get_services() -> Services:
    """The process-wide services, built from the environment on first call."""
    global _process_services  # noqa: PLW0603 - the one process-wide cache, guarded by a lock
    if _process_services is None:
        with _process_lock:
            if _process_services is None:
                from shared.adapters.azure_monitor import configure_observability

                configure_observability()  # once per process; nothing without an App Insights connection
                _process_services = bootstrap()
    return _process_services


def use_services(services: Services | None) -> None:
    """Install (or with ``None`` forget) the process-wide services: for the local runtime and tests."""
    global _process_services  # noqa: PLW0603 - see get_services
    with _process_lock:
        _process_services = services


def _build_credential(settings: Settings) -> Any:
    # One credential per process. A user-assigned identity is named explicitly; otherwise
    # DefaultAzureCredential (honouring AZURE_TOKEN_CREDENTIALS=prod|dev) finds the right source.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.in_azure and settings.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return DefaultAzureCredential()


def _build_store(settings: Settings, credential: _Lazy) -> StateStore:
    if settings.store_backend is StoreBackend.TABLES:
        from shared.adapters.azure_tables import AzureTableStore

        if settings.table_connection:
            tables = AzureTableStore.from_connection_string(
                settings.table_connection, table_prefix=settings.table_prefix
            )
        else:
            assert settings.table_endpoint is not None  # store_backend says so
            tables = AzureTableStore(settings.table_endpoint, credential.get(), table_prefix=settings.table_prefix)
        if not settings.in_azure:
            tables.ensure_tables()  # in Azure the tables come from Bicep and the identity cannot create them
        return tables
    from shared.adapters.sqlite_store import SqliteStateStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStateStore(settings.sqlite_path)


def _build_queue(settings: Settings, credential: _Lazy, clock: Clock) -> JobQueue:
    if settings.queue_backend is QueueBackend.SERVICE_BUS:
        from shared.adapters.servicebus import ServiceBusJobQueue

        if settings.servicebus_connection:
            return ServiceBusJobQueue.from_connection_string(
                settings.servicebus_connection, settings.sync_queue, max_batch_bytes=settings.sync_queue_max_batch_bytes
            )
        assert settings.servicebus_namespace is not None  # queue_backend says so
        return ServiceBusJobQueue(
            settings.servicebus_namespace,
            settings.sync_queue,
            credential.get(),
            max_batch_bytes=settings.sync_queue_max_batch_bytes,
        )
    from shared.adapters.sqlite_queue import SqliteJobQueue

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The embedded queue keeps the services' time, so scheduled checks follow the same clock.
    return SqliteJobQueue(settings.sqlite_path, queue_name=settings.sync_queue, clock=clock.now)


def _build_arm(settings: Settings, credential: _Lazy, clock: Clock) -> ConnectedRegistryReader:
    from shared.adapters.arm import ArmConnectedRegistryReader
    from shared.adapters.arm_cache import CachedArmReader

    reader = ArmConnectedRegistryReader(credential.get(), base_url=settings.arm_endpoint, clock=clock.now)
    return CachedArmReader(reader, clock)


def _build_observer(credential: _Lazy) -> WorkloadObserver:
    from shared.adapters.container_insights import ContainerInsightsObserver

    return ContainerInsightsObserver(credential.get())


def _build_cluster_health(settings: Settings, credential: _Lazy) -> ClusterHealthReader:
    from shared.adapters.arc import ArcHealthReader

    return ArcHealthReader(credential.get(), base_url=settings.arm_endpoint)


def _build_content_reader(settings: Settings, credential: _Lazy) -> ReleaseContentReader | None:
    """The parent registry's data plane with the app's identity, where the registry served is named and
    is an Azure one; elsewhere (local runs pass their own) nothing reads release sizes."""
    if not settings.registry or not settings.registry.endswith(".azurecr.io"):
        return None
    from shared.adapters.parent_registry import ParentRegistryContentReader

    return ParentRegistryContentReader(f"https://{settings.registry}", credential.get())


def _build_probe() -> ManifestProbe:
    from shared.adapters.oci import HttpManifestProbe

    return HttpManifestProbe()


def _build_credentials(settings: Settings) -> SiteCredentials:
    from shared.adapters.oci import StaticSiteCredentials

    return StaticSiteCredentials(settings.site_credentials)


def _build_events(settings: Settings, credential: _Lazy) -> EventSink:
    if settings.events_topic_endpoint:
        from shared.adapters.eventgrid import EventGridEventSink

        return EventGridEventSink(settings.events_topic_endpoint, credential.get())
    from shared.adapters.outbox import SqliteOutbox

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteOutbox(settings.sqlite_path)


_unsigned_warned = threading.Event()


def _build_report_secret(settings: Settings) -> bytes | None:
    if settings.report_secret:
        return settings.report_secret.encode()
    if settings.in_azure:
        return None
    from shared.adapters.signing_key import REPORT_SECRET_FILE_NAME, load_or_create_report_secret

    return load_or_create_report_secret(settings.data_dir / REPORT_SECRET_FILE_NAME)


def _build_signer(settings: Settings) -> ReceiptSigner | None:
    from shared.domain.receipts import ReceiptSigner, load_private_key

    if settings.signing_key:
        return ReceiptSigner(load_private_key(settings.signing_key))  # checked when the settings were read
    if settings.in_azure:
        if not _unsigned_warned.is_set():
            _unsigned_warned.set()
            logger.warning("%s is not set: delivery receipts are not signed or recorded", SIGNING_KEY)
        return None
    from shared.adapters.signing_key import KEY_FILE_NAME, load_or_create_key

    return ReceiptSigner(load_or_create_key(settings.data_dir / KEY_FILE_NAME))
