"""What the use cases depend on, as one :class:`typing.Protocol`.

Every service function takes a :class:`Dependencies` as its first argument (named ``services``) and reaches
the ports through it. The composition root's :class:`shared.bootstrap.Services` satisfies it; services never
import the composition root, so the layers point one way: entry points build the root, the root builds the
adapters, the services see only this.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from shared import ports
from shared.domain.receipts import ReceiptSigner
from shared.services.catalog import SiteCatalog
from shared.services.token_findings import TokenFindings


class ServiceSettings(Protocol):
    """The settings the use cases read (:class:`shared.config.Settings` has them)."""

    @property
    def registry(self) -> str | None:
        """The parent registry's login server when events should not be trusted to name it."""

    @property
    def token_expiry_horizon_days(self) -> int:
        """A site token (or TLS certificate) expiring within this many days is flagged."""

    @property
    def outdated_after(self) -> timedelta:
        """How long a site may run a digest older than one it holds before it is outdated."""


class Dependencies(Protocol):
    """The ports and per-process components a use case may use; each is built on first use."""

    @property
    def settings(self) -> ServiceSettings: ...

    @property
    def store(self) -> ports.StateStore: ...

    @property
    def queue(self) -> ports.JobQueue: ...

    @property
    def clock(self) -> ports.Clock: ...

    @property
    def catalog(self) -> SiteCatalog:
        """Sites as ingest sees them (cached briefly)."""

    @property
    def arm(self) -> ports.ConnectedRegistryReader: ...

    @property
    def probe(self) -> ports.ManifestProbe: ...

    @property
    def content_reader(self) -> ports.ReleaseContentReader | None:
        """Reads what a release weighs from the parent registry; ``None`` where nothing can."""

    @property
    def credentials(self) -> ports.SiteCredentials: ...

    @property
    def events(self) -> ports.EventSink: ...

    @property
    def workload_observer(self) -> ports.WorkloadObserver:
        """What runs at a site, from the cloud (Container Insights); built on first use."""

    @property
    def cluster_health(self) -> ports.ClusterHealthReader:
        """A site's Arc cluster and connected registry extension; built on first use."""

    @property
    def outbox(self) -> ports.Outbox | None:
        """The local outbox when events stay local; ``None`` when they go to Event Grid."""

    @property
    def signer(self) -> ReceiptSigner | None:
        """What signs delivery receipts; ``None`` where receipts are not recorded."""

    @property
    def report_secret(self) -> bytes | None:
        """What site report tokens derive from; ``None`` where site reports are not accepted."""

    @property
    def token_findings(self) -> TokenFindings:
        """What the last token check of this process found."""
