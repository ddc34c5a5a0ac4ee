"""Ports: the interfaces the services depend on. Adapters in ``shared.adapters`` implement them.

Verbs follow the Azure SDK guidelines: ``get_`` raises :class:`NotFound` when missing, ``list_``
returns an empty list (never ``None``), ``create_`` raises :class:`AlreadyExists`, ``replace_``
is conditional on an ETag and raises :class:`ConcurrencyConflict` when it no longer matches,
``upsert_`` creates or replaces, ``delete_`` succeeds when already gone. Transient backend trouble
surfaces as :class:`StoreUnavailable` / :class:`QueueUnavailable`; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from shared.domain.content import ReleaseContent
from shared.domain.inventory import RegistryState, TokenState
from shared.domain.ledger import LedgerDay
from shared.domain.model import Evidence, Page, Release, Site, SiteSync, Versioned
from shared.domain.observations import (
    BasicCredentials,
    ConnectedRegistryState,
    ManifestObservation,
    OutboundEvent,
    SyncScope,
)
from shared.domain.workloads import RegistryCluster, SiteObservation, SiteRuntime
from shared.errors import InvalidInput

PropertyValue = str | int | float | bool

# Rows of one release written atomically together: a Table Storage entity-group transaction holds
# 100 operations, and one of them moves the release's version (what a revalidation reads).
ROWS_PER_TRANSACTION = 99


@dataclass(frozen=True)
class SavedSiteSync:
    """ETags after an atomic site-sync save: the row's, and the release header's when it was written."""

    row_etag: str
    release_etag: str | None = None


@dataclass(frozen=True)
class RowWrite:
    """One row of a batch save: the row to store, the ETag it was read with, and the row as read."""

    row: SiteSync
    etag: str
    previous: SiteSync


@dataclass(frozen=True)
class BatchSaved:
    """What a batch save wrote: the sites saved, and those of chunks it left alone because one of
    their rows changed since it was read (or is gone), for the caller to redo one by one."""

    saved: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


def batch_release(writes: Sequence[RowWrite]) -> str | None:
    """The one release a batch save's rows belong to (``None`` for none). Raises: InvalidInput."""
    releases = {write.row.release_id for write in writes}
    if len(releases) > 1:
        raise InvalidInput("CROSS_RELEASE_WRITE", "a batch save takes the rows of one release")
    return next(iter(releases), None)


class StateStore(Protocol):
    """Sites, releases, per-site sync rows and append-only evidence.

    Layout contract (both adapters): everything about one release (its header with counters, one row
    per site, its evidence) lives together, so "all sites of one release" is one partition read and
    a row change plus its evidence plus the release counters commit atomically.
    """

    # -- sites ---------------------------------------------------------------------------------
    def upsert_sites(self, sites: Sequence[Site]) -> None:
        """Create or replace sites by name."""

    def get_site(self, name: str) -> Site:
        """Raises: NotFound."""

    def list_sites(self) -> list[Site]:
        """Every site, ordered by name."""

    def delete_site(self, name: str) -> None:
        """Remove a site; succeeds when it is already gone."""

    # -- releases ------------------------------------------------------------------------------
    def create_release(self, release: Release) -> Versioned[Release]:
        """Insert-once. Raises: AlreadyExists when the release id is taken (idempotent callers re-read)."""

    def get_release(self, release_id: str) -> Versioned[Release]:
        """Raises: NotFound."""

    def replace_release(self, release: Release, *, etag: str) -> Versioned[Release]:
        """Replace the header iff ``etag`` still matches. Raises: ConcurrencyConflict, NotFound."""

    def publish_release(self, release: Release) -> None:
        """Make the release listable by :meth:`list_releases` (idempotent; refreshes its tags).

        Called once fan-out has finished, so it doubles as the fan-out-complete marker.
        """

    def is_release_published(self, release_id: str) -> bool:
        """Whether :meth:`publish_release` has run for this release."""

    def list_releases(
        self,
        *,
        repository: str | None = None,
        tag: str | None = None,
        digest: str | None = None,
        page_size: int = 50,
        continuation: str | None = None,
    ) -> Page[Release]:
        """Published releases, newest push first, filtered by exact repository, tag and digest.

        Raises:
            InvalidInput: ``INVALID_CONTINUATION`` for a token this store did not issue for these filters.
        """

    # -- site-sync rows ------------------------------------------------------------------------
    def add_site_syncs(self, rows: Sequence[SiteSync]) -> int:
        """Create the rows that do not exist yet and leave existing ones untouched (idempotent).

        Writes in atomic batches of at most :data:`ROWS_PER_TRANSACTION` rows of one release. Returns
        how many were created.
        """

    def get_site_sync(self, release_id: str, site: str) -> Versioned[SiteSync]:
        """Raises: NotFound."""

    def list_site_syncs(self, release_id: str) -> list[Versioned[SiteSync]]:
        """Every row of one release, ordered by site name."""

    def release_version(self, release_id: str) -> str:
        """An opaque token that changes whenever the release header or any of its rows changes.

        Reads versions only, never documents: what a conditional read compares before it builds an
        answer. Raises: NotFound.
        """

    def save_site_sync(
        self,
        row: SiteSync,
        *,
        etag: str,
        evidence: Sequence[Evidence] = (),
        release: Versioned[Release] | None = None,
        previous: SiteSync | None = None,
    ) -> SavedSiteSync:
        """Atomically: replace ``row`` iff ``etag`` matches, replace the release header iff its etag
        matches (when given), and append ``evidence`` (an ``evidence_id`` already stored is not
        duplicated). At most 97 evidence records per call (one entity-group transaction).
        ``previous``, the row as read, lets the store skip a ledger write that changes nothing.

        Afterwards the row appears in :meth:`list_site_syncs_for_site` for its site. That per-site
        listing is a projection written after the atomic write: if writing it fails the call raises
        a transient error and the next save of the row repairs it.

        Raises:
            ConcurrencyConflict: either precondition failed; nothing was written.
            NotFound: the row or the release does not exist.
            InvalidInput: ``CROSS_RELEASE_WRITE`` when the header or evidence belong to another release.
        """

    def save_site_sync_batch(self, writes: Sequence[RowWrite]) -> BatchSaved:
        """Replace rows of one release, each iff its ETag matches, in atomic chunks of
        :data:`ROWS_PER_TRANSACTION` rows (one entity-group transaction each): for a change that
        touches many rows and no evidence, such as planning every row's transfer. A chunk in which
        any row changed since it was read, or is gone, writes nothing and its sites come back
        ``refused``. The ledger follows the rows as :meth:`save_site_sync` keeps it; the per-site
        listing does not: a row already in it shows the row as of its last :meth:`save_site_sync`
        until the next one.

        Raises:
            InvalidInput: ``CROSS_RELEASE_WRITE`` when the rows belong to more than one release.
        """

    def list_due_site_syncs(self, release_id: str, *, due_by: datetime) -> list[Versioned[SiteSync]]:
        """Rows of one release whose :attr:`~shared.domain.model.SiteSync.due_at` is at or before
        ``due_by``, ordered by site name: an index kept with the row in the same write, so the cost
        follows the rows that are due, not the rows of the release."""

    def list_site_syncs_for_site(
        self, site: str, *, page_size: int = 100, continuation: str | None = None
    ) -> Page[SiteSync]:
        """Rows of one site that have been saved at least once (:meth:`save_site_sync`), newest
        release first. Rows only created by fan-out and never checked may be absent."""

    # -- the site ledger -----------------------------------------------------------------------
    def seed_ledger(self, rows: Sequence[SiteSync]) -> None:
        """Record the ledger entries of ``rows`` that have none yet (the rows a fan-out created);
        an entry already there, written by a save since, is kept. Idempotent."""

    def list_ledger(self, *, pushed_from: datetime, pushed_until: datetime) -> list[LedgerDay]:
        """The site ledgers (:mod:`shared.domain.ledger`) of the push days from ``pushed_from`` to
        ``pushed_until``, every site; entries loaded only for the first day, when the period starts
        in the middle of it (:func:`~shared.domain.ledger.starts_mid_day`). :meth:`seed_ledger`
        records the rows a fan-out created and :meth:`save_site_sync` the entry of the row it saves
        (in the same transaction on SQLite; right after it, like the per-site listing, on Table Storage).
        The cost follows sites × push days in the period, not releases."""

    # -- what runs at each site ----------------------------------------------------------------
    def get_site_runtime(self, site: str) -> Versioned[SiteRuntime]:
        """What runs at ``site`` (:mod:`shared.domain.workloads`), one document per site.

        Raises: NotFound (nothing was observed there yet).
        """

    def list_site_runtimes(self) -> list[SiteRuntime]:
        """Every site's runtime, ordered by site (one partition read on Table Storage)."""

    def save_site_runtime(self, runtime: SiteRuntime, *, etag: str | None) -> str:
        """Create the site's runtime (``etag`` ``None``) or replace it iff ``etag`` still matches;
        returns the new ETag.

        Raises:
            ConcurrencyConflict: it exists already (create) or changed since it was read (replace).
            EntityTooLarge: the document exceeds the stores' limit (``fit_runtime`` keeps it within).
        """

    # -- evidence ------------------------------------------------------------------------------
    def append_evidence(self, evidence: Sequence[Evidence]) -> int:
        """Append records, skipping any already stored (same ``evidence_id``). Returns how many were new."""

    def list_evidence(self, release_id: str, *, site: str | None = None) -> list[Evidence]:
        """Evidence of one release (optionally one site), oldest observation first."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A job to send. ``message_id`` is deterministic so the queue drops re-sends (duplicate detection)."""

    message_id: str
    body: bytes
    session_id: str | None = None
    scheduled_at: datetime | None = None
    time_to_live: timedelta | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedMessage:
    """A message received under a lock; settle it with complete, abandon or dead-letter."""

    message_id: str
    body: bytes
    delivery_count: int
    lock_token: str
    session_id: str | None = None
    enqueued_at: datetime | None = None
    locked_until: datetime | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None


@dataclass(frozen=True)
class SendReport:
    """What a send did: messages handed over and the send calls (batches) it took."""

    messages: int
    batches: int


class JobQueue(Protocol):
    """A work queue with Service Bus semantics: peek-lock, delivery count, dead-lettering,
    scheduled delivery and duplicate detection on ``message_id``."""

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> SendReport:
        """Send in as few batches as the backend's batch size allows. A message whose id was sent
        within the duplicate-detection window is accepted and silently dropped.

        Raises:
            EntityTooLarge: one message alone exceeds the size limit.
            QueueUnavailable: transient failure; the caller may resend (ids make it safe).
        """

    def receive_messages(
        self, *, max_count: int = 1, max_wait: float = 0.0, dead_letter: bool = False
    ) -> list[ReceivedMessage]:
        """Lock and return up to ``max_count`` visible messages (from the dead-letter sub-queue when
        ``dead_letter``). Messages of one session are delivered one at a time."""

    def complete_message(self, message: ReceivedMessage) -> None:
        """Remove a locked message for good."""

    def abandon_message(self, message: ReceivedMessage) -> None:
        """Release the lock so the message is delivered again (its delivery count has risen)."""

    def dead_letter_message(self, message: ReceivedMessage, *, reason: str, description: str = "") -> None:
        """Move a locked message to the dead-letter sub-queue with a reason."""


class Clock(Protocol):
    """The current time; tests pass a controllable one."""

    def now(self) -> datetime:
        """Timezone-aware UTC now."""


class ConnectedRegistryReader(Protocol):
    """Reads connected registries, their sync tokens and scope maps from ARM."""

    def get_connected_registry(self, resource_id: str) -> ConnectedRegistryState:
        """Raises: NotFound (the connected registry is gone), UpstreamUnavailable (throttled, 5xx,
        timeouts, not yet authorized), UpstreamRejected (a malformed id or request)."""

    def get_sync_scope(self, token_id: str) -> SyncScope:
        """The sync token (status, password expiries) and its scope map's repositories.

        Raises: NotFound, UpstreamUnavailable, UpstreamRejected.
        """

    def get_token(self, token_id: str) -> TokenState:
        """One token (sync or client): status and password expiries; its scope map is not read.

        Readers without a token read of their own (the local stand-ins) answer from the sync scope.

        Raises: NotFound, UpstreamUnavailable, UpstreamRejected.
        """


class RegistryInventory(Protocol):
    """The parent registry and what hangs off it, for governance: preflight and discovery.

    The ARM adapter implements it next to :class:`ConnectedRegistryReader`; the local stand-ins do not.
    """

    def get_registry(self, registry_id: str) -> RegistryState:
        """``registries.get``: SKU, dedicated data endpoint, login server, location.

        Raises: NotFound, UpstreamUnavailable, UpstreamRejected (a malformed id).
        """

    def list_connected_registries(self, registry_id: str) -> list[ConnectedRegistryState]:
        """Every connected registry of the registry (all pages), in ARM's order.

        Raises: NotFound, UpstreamUnavailable, UpstreamRejected.
        """


class ArmInventory(RegistryInventory, ConnectedRegistryReader, Protocol):
    """What preflight and discovery read: the ARM adapter is one."""


class ManifestProbe(Protocol):
    """Asks a site's registry directly whether it holds a manifest."""

    def probe(
        self, endpoint: str, repository: str, digest: str, *, credentials: BasicCredentials | None = None
    ) -> ManifestObservation:
        """``HEAD /v2/<repository>/manifests/<digest>``, answering Basic or Bearer challenges.

        Raises: UpstreamUnavailable (unreachable, 5xx, 429, timeouts), UpstreamRejected
        (credentials refused, or an answer that is not a registry's).
        """


class ReleaseContentReader(Protocol):
    """Reads what a release weighs from the parent registry: its manifest (an index through to its
    platform manifests) and the blobs they reference."""

    def read_content(self, repository: str, digest: str) -> ReleaseContent:
        """The release's distinct blobs.

        Raises: UpstreamUnavailable (retry later), UpstreamRejected (refused, or not there),
        InvalidInput (``NOT_AN_IMAGE``, ``TOO_LARGE``).
        """


class WorkloadObserver(Protocol):
    """What runs at a site, seen from the cloud (Container Insights on its Arc cluster)."""

    def observe(self, site: Site, *, now: datetime) -> SiteObservation:
        """A snapshot of the site's running containers and its recent pull errors.

        Raises: UpstreamUnavailable (throttled, 5xx, unreachable), UpstreamRejected (no workspace or
        cluster named, access refused, a malformed id).
        """


class ClusterHealthReader(Protocol):
    """A site's health through ARM: its Arc connected cluster and connected registry extension."""

    def read_health(self, site: Site, *, now: datetime) -> SiteObservation:
        """An observation with ``cluster_connectivity`` and ``extension`` set.

        Raises: NotFound (the cluster is gone), UpstreamUnavailable, UpstreamRejected.
        """

    def list_registry_clusters(self, resource_group_id: str) -> list[RegistryCluster]:
        """The Arc clusters of a resource group that run the connected registry extension (all pages).

        Raises: NotFound (no such group), UpstreamUnavailable, UpstreamRejected (a malformed id).
        """


class SiteCredentials(Protocol):
    """Where a site's client-token credentials come from (Key Vault in Azure, settings locally)."""

    def get_credentials(self, site: str) -> BasicCredentials | None:
        """The site's credentials, or ``None`` when the site's registry needs none."""


class EventSink(Protocol):
    """Where acrsync's own events go: an Event Grid topic in Azure, the local outbox otherwise."""

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        """Publish; re-publishing an event id is harmless (subscribers and the outbox dedupe).

        Raises: UpstreamUnavailable (retry), UpstreamRejected.
        """


class Outbox(EventSink, Protocol):
    """The local event sink, which the API can list."""

    def list_events(self, *, limit: int = 100, after: str | None = None) -> list[OutboundEvent]:
        """Events in publication order, after the event id ``after`` when given."""
