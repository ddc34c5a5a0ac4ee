"""What acrsync observes about a site from outside: ARM state, sync scope, OCI manifest probes,
and the events it publishes about releases. Plain values; adapters build them from SDK types."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class ConnectionState(StrEnum):
    """The connected registry's ``connectionState`` (ARM), plus UNKNOWN for values ARM may add."""

    ONLINE = "Online"
    OFFLINE = "Offline"
    SYNCING = "Syncing"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, value: str | None) -> ConnectionState:
        for member in cls:
            if value and member.value.lower() == value.lower():
                return member
        return cls.UNKNOWN


@dataclass(frozen=True)
class StatusDetail:
    """One ``statusDetails`` entry: component ``type``, HTTP-like ``code`` (a string), description."""

    type: str
    code: str
    description: str
    timestamp: datetime | None = None


class SyncAuth(StrEnum):
    """How a connected registry authenticates its sync (``parent.syncProperties.authType``)."""

    SYNC_TOKEN = "SyncToken"  # noqa: S105 - a mode, not a secret: a sync token and its scope map decide
    MANAGED_IDENTITY = "ManagedIdentity"  # preview: an identity and RBAC/ABAC; no token, no scope map

    @classmethod
    def parse(cls, value: str | None) -> SyncAuth:
        """ARM's value, case-insensitively; absent (every resource before the preview) is a sync token."""
        wanted = (value or "").strip().lower()
        return next((member for member in cls if member.value.lower() == wanted), cls.SYNC_TOKEN)


# Times outside these bounds are not believed, wherever they come from (events, ARM): nothing real
# happened before 2000 or after now, and such values would also overflow date arithmetic.
EARLIEST_BELIEVABLE_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=5)
# The ranges ARM accepts for messageTtl (P1D..P90D) and syncWindow (PT3H..P7D).
MAX_MESSAGE_TTL = timedelta(days=90)
MAX_SYNC_WINDOW = timedelta(days=7)


def believable(at: datetime | None, now: datetime) -> datetime | None:
    """``at`` when it lies between 2000 and ``now`` (give or take clock skew), else unknown."""
    if at is None or at < EARLIEST_BELIEVABLE_TIME or at > now + MAX_CLOCK_SKEW:
        return None
    return at


@dataclass(frozen=True)
class SyncResult:
    """``registrySyncResult`` (preview API): the last sync as the connected registry reported it."""

    state: str | None = None  # Pending, Syncing, Succeeded, Failed, TimedOut, NotActivated
    trigger: str | None = None  # InitialSync, ManualResync, RecoveryService, SyncTokenUpdate
    last_successful_end: datetime | None = None


@dataclass(frozen=True)
class ConnectedRegistryState:
    """A connected registry as ARM reports it (``connected_registries.get``)."""

    resource_id: str
    name: str
    connection_state: ConnectionState
    observed_at: datetime
    active: bool = True
    mode: str | None = None
    provisioning_state: str | None = None
    last_activity_time: datetime | None = None
    last_sync_time: datetime | None = None
    schedule: str | None = None
    sync_window: timedelta | None = None
    message_ttl: timedelta | None = None
    token_id: str | None = None
    status_details: tuple[StatusDetail, ...] = ()
    notifications: tuple[str, ...] = ()
    # ARM ids of the tokens local clients use (``clientTokenIds``), and of the parent connected
    # registry (``parent.id``; ``None`` when the parent is the cloud registry).
    client_token_ids: tuple[str, ...] = ()
    parent_id: str | None = None
    sync_auth: SyncAuth = SyncAuth.SYNC_TOKEN
    sync_result: SyncResult | None = None

    def as_believed(self, now: datetime) -> ConnectedRegistryState:
        """This state with times acrsync cannot believe set to unknown and durations within ARM's ranges."""
        ttl, window = self.message_ttl, self.sync_window
        return replace(
            self,
            last_sync_time=believable(self.last_sync_time, now),
            last_activity_time=believable(self.last_activity_time, now),
            message_ttl=min(ttl, MAX_MESSAGE_TTL) if ttl is not None else None,
            sync_window=min(window, MAX_SYNC_WINDOW) if window is not None else None,
        )

    @property
    def syncs_with_identity(self) -> bool:
        """No sync token or scope map to judge: token expiry and scope drift do not apply."""
        return self.sync_auth is SyncAuth.MANAGED_IDENTITY

    def evidence_details(self) -> dict[str, str]:
        """The ARM values a decision relied on, for the evidence record (no secrets here)."""
        details = {
            "connectionState": self.connection_state.value,
            "activation": "Active" if self.active else "Inactive",
        }
        for key, value in (
            ("lastSyncTime", self.last_sync_time),
            ("lastActivityTime", self.last_activity_time),
        ):
            if value is not None:
                details[key] = value.isoformat()
        if self.schedule:
            details["schedule"] = self.schedule
        if self.syncs_with_identity:
            details["syncAuth"] = self.sync_auth.value
        if self.sync_result is not None and self.sync_result.state:
            details["syncState"] = self.sync_result.state
        return details


@dataclass(frozen=True)
class TokenPassword:
    name: str
    expiry: datetime | None


@dataclass(frozen=True)
class SyncScope:
    """The sync token of a connected registry and the repositories its scope map lets it sync."""

    token_id: str
    token_enabled: bool
    repository_patterns: tuple[str, ...]  # from repositories/<repo>/content/read; "*" and "a/*" kept as globs
    passwords: tuple[TokenPassword, ...] = ()

    def covers(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, pattern) for pattern in self.repository_patterns)

    def expired(self, now: datetime) -> bool:
        """True when every password with an expiry has expired (a password without expiry never does)."""
        if not self.passwords:
            return False
        return all(p.expiry is not None and p.expiry <= now for p in self.passwords)


# What a refusal may quote in evidence and answers: enough to say what was wrong.
MAX_REFUSAL_CHARS = 300


def refused_by_site_registry(reason: str) -> str:
    """How evidence names a site registry answer that was refused (the reason never quotes credentials)."""
    return f"refused by the site registry: {reason[:MAX_REFUSAL_CHARS]}"


class ProbeOutcome(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


@dataclass(frozen=True)
class ManifestObservation:
    """The answer of a site's registry to ``HEAD /v2/<repo>/manifests/<digest>``."""

    outcome: ProbeOutcome
    status_code: int
    observed_at: datetime
    endpoint: str
    digest: str | None = None  # Docker-Content-Digest
    media_type: str | None = None

    def evidence_details(self) -> dict[str, str]:
        details = {"endpoint": self.endpoint, "status": str(self.status_code)}
        if self.digest:
            details["Docker-Content-Digest"] = self.digest
        if self.media_type:
            details["Content-Type"] = self.media_type
        return details


@dataclass(frozen=True)
class BasicCredentials:
    """A site's ACR client token (connected registries accept only tokens). Never logged."""

    username: str
    password: str = field(repr=False)
    # Origins (scheme://host[:port]) besides the site endpoint's own that may receive these credentials:
    # a token service the site's registry names as its realm. Connected registries need none.
    token_realms: tuple[str, ...] = ()


class OutboundEventType(StrEnum):
    SITE_SYNCED = "acrsync.site.synced"
    SITE_STALE = "acrsync.site.stale"
    SITE_WONT_FIT = "acrsync.site.wont_fit"  # what the site needs does not fit its next sync window
    RELEASE_READY = "acrsync.release.ready"
    RELEASE_FAILED = "acrsync.release.failed"
    SITE_TOKEN_EXPIRING = "acrsync.site.token_expiring"  # noqa: S105 - an event type
    SITE_PULL_FAILED = "acrsync.site.pull_failed"
    SITE_OUTDATED = "acrsync.site.outdated"
    SITE_TLS_EXPIRING = "acrsync.site.tls_expiring"


@dataclass(frozen=True)
class OutboundEvent:
    """A CloudEvent acrsync publishes; ``event_id`` is deterministic so subscribers can dedupe."""

    event_id: str
    type: OutboundEventType
    source: str
    subject: str
    time: datetime
    data: Mapping[str, Any]
