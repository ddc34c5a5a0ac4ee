"""Entities and value objects: sites, releases, per-site sync rows and evidence records.

All are frozen dataclasses; "changing" one returns a new value (``dataclasses.replace``). Datetimes
are timezone-aware UTC throughout.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, Generic, TypeVar

from shared.domain.annotations import Annotations, RunbookField
from shared.domain.content import ReleaseContent
from shared.domain.links import Transfer
from shared.domain.names import release_id_for, validate_digest, validate_repository, validate_site_name
from shared.domain.states import EvidenceSource, SyncReason, SyncState, check_transition
from shared.errors import InvalidInput

T = TypeVar("T")

# Connected-registry limits (ARM documentation): sync window 1 h – 7 d, message TTL 1 d – 90 d.
MIN_SYNC_WINDOW = timedelta(hours=1)
MAX_SYNC_WINDOW = timedelta(days=7)
MIN_MESSAGE_TTL = timedelta(days=1)
MAX_MESSAGE_TTL = timedelta(days=90)
DEFAULT_MESSAGE_TTL = timedelta(days=2)
DEFAULT_STALE_AFTER_WINDOWS = 2
# A release keeps the ids of the events that named it, newest last, up to this many; enough to
# recognise redeliveries (which come within Event Grid's 24 h retry period) without unbounded growth.
MAX_SOURCE_EVENT_IDS = 64
# Tags one release keeps: with the event ids, well inside one stored entity's size limit. A digest
# pushed under more tags keeps its first ones; the push of one more is reported, not stored.
MAX_RELEASE_TAGS = 100

_ON_ITS_WAY = frozenset({SyncState.PENDING, SyncState.WAITING_FOR_WINDOW})
_AWAITING_CHECK_ONLY = frozenset({SyncState.STALE, SyncState.SYNCED})
_SEMVER = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")


class ArtifactKind(StrEnum):
    """What kind of artifact a release is."""

    IMAGE = "IMAGE"
    CHART = "CHART"


@dataclass(frozen=True)
class TagPolicy:
    """Which tags a site accepts: ``include`` globs (empty = all), ``exclude`` globs, semver only."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    semver_only: bool = False

    def admits(self, tag: str) -> bool:
        if self.semver_only and not _SEMVER.fullmatch(tag):
            return False
        if self.include and not any(fnmatch.fnmatchcase(tag, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(tag, p) for p in self.exclude)

    @property
    def is_open(self) -> bool:
        return not (self.include or self.exclude or self.semver_only)

    def as_dict(self) -> dict[str, Any]:
        """The one representation of a tag policy, in store documents and API views alike."""
        return {"include": list(self.include), "exclude": list(self.exclude), "semver_only": self.semver_only}


@dataclass(frozen=True)
class Site:
    """An edge site: one connected registry, its approved repositories and its sync schedule.

    ``schedule`` is the connected registry's 5-field cron (UTC); ``None`` means continuous sync.
    ``repositories`` holds approved patterns: exact names, ``prefix/*`` or shell globs.
    """

    name: str
    ring: str = "default"
    critical: bool = False
    owner: str | None = None
    repositories: tuple[str, ...] = ()
    tag_policy: TagPolicy = field(default_factory=TagPolicy)
    connected_registry: str | None = None
    schedule: str | None = None
    sync_window: timedelta | None = None
    message_ttl: timedelta = DEFAULT_MESSAGE_TTL
    endpoint: str | None = None
    # Stale policy: a release still missing after this many closed windows is late.
    stale_after_windows: int = DEFAULT_STALE_AFTER_WINDOWS
    # Where acrsync learns what runs at the site (shared.domain.workloads): the Arc connected
    # cluster's ARM id (site health, and Container Insights in resource context), a Log Analytics
    # workspace id (Container Insights in workspace context), and whether an acrsync agent reports.
    cluster_id: str | None = None
    log_analytics_workspace_id: str | None = None
    reporter: bool = False
    # Where the site stands in its sites file: dashboards show rings and sites in that order.
    position: int | None = None
    # The site's link as its sites file declares it (bits per second): what moving a release costs there.
    bandwidth_bps: float | None = None

    def __post_init__(self) -> None:
        validate_site_name(self.name)
        if self.stale_after_windows < 1:
            raise InvalidInput("INVALID_STALE_POLICY", "stale_after_windows must be at least 1")

    def approves_repository(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, pattern) for pattern in self.repositories)

    def admits(self, repository: str, tags: frozenset[str]) -> SyncReason | None:
        """``None`` when the site should hold a release of ``repository`` with ``tags``, else why not."""
        if not self.approves_repository(repository):
            return SyncReason.REPO_NOT_IN_SCOPE
        if self.tag_policy.is_open:
            return None
        if not any(self.tag_policy.admits(tag) for tag in tags):
            return SyncReason.TAG_NOT_ADMITTED
        return None


@dataclass(frozen=True)
class Release:
    """One digest of one repository of the parent registry, with every tag it was pushed under."""

    registry: str
    repository: str
    digest: str
    pushed_at: datetime
    tags: frozenset[str] = frozenset()
    media_type: str | None = None
    size: int | None = None
    actor: str | None = None
    kind: ArtifactKind = ArtifactKind.IMAGE
    source_event_ids: tuple[str, ...] = ()
    withdrawn_at: datetime | None = None
    # Rows per state as of ``counts_as_of``: a summary kept off the site-check path (the release
    # summary job recounts the rows after changes), so it may lag by one summary interval. Answers
    # that read the rows anyway count them instead.
    counts: Mapping[SyncState, int] = field(default_factory=dict)
    counts_as_of: datetime | None = None
    # The earliest SiteSync.due_at among its rows, as of counts_as_of: a sweep passes over a release
    # with nothing due yet without reading any of its rows.
    next_due_at: datetime | None = None
    # The chain of signed delivery receipts of releases written before receipts chained per site
    # (shared.domain.receipts): how many there are and the SHA-256 of the last envelope. Frozen
    # since; the release checkpoint covers it, so those receipts cannot be truncated either.
    receipt_sequence: int = 0
    receipt_head: str | None = None
    # The newest signed release checkpoint (a DSSE envelope in canonical JSON), when one was issued.
    checkpoint: str | None = None
    # Whether every row of this release feeds the stores' indexes: the due index (SiteSync.due_at)
    # and the site ledger (shared.domain.ledger). True for releases created since they exist; the
    # sweeper and the report read older releases whole, as before.
    indexed: bool = False
    # Whether the site ledger holds an entry for every row of the release: the first release summary
    # records the rows fan-out created (fan-out itself writes only the rows).
    ledger_seeded: bool = False
    # What the release weighs (shared.domain.content), read once from the parent registry off the
    # fan-out path; while unknown, ``content_unknown`` says why (shared.domain.content.ContentUnknown).
    content: ReleaseContent | None = None
    content_unknown: str | None = None
    # The runbook fields people recorded on the release, with their history (shared.domain.annotations).
    annotations: Annotations | None = None

    def __post_init__(self) -> None:
        validate_repository(self.repository)
        validate_digest(self.digest)

    @cached_property  # a SHA-256 per access adds up when a gate looks at thousands of rows
    def release_id(self) -> str:
        return release_id_for(self.registry, self.repository, self.digest)

    @property
    def image_ref(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"

    @property
    def approved(self) -> bool:
        """Whether someone recorded an approval link on the release."""
        return self.annotations is not None and RunbookField.APPROVAL_URL in self.annotations.fields

    def has_seen_event(self, event_id: str) -> bool:
        return event_id in self.source_event_ids

    def with_event(self, event_id: str, tags: frozenset[str] = frozenset()) -> Release:
        """This release with one more source event and any new tags (idempotent)."""
        ids = self.source_event_ids
        if event_id not in ids:
            ids = ((*ids, event_id))[-MAX_SOURCE_EVENT_IDS:]
        merged = self.tags | tags
        return replace(self, source_event_ids=ids, tags=merged if len(merged) <= MAX_RELEASE_TAGS else self.tags)

    def with_count_moved(self, source: SyncState | None, target: SyncState) -> Release:
        counts = dict(self.counts)
        if source is not None:
            counts[source] = counts.get(source, 0) - 1
            if counts[source] < 0:
                raise InvalidInput("COUNTER_UNDERFLOW", f"release counter for {source.value} went below zero")
        counts[target] = counts.get(target, 0) + 1
        return replace(self, counts={state: n for state, n in counts.items() if n})


@dataclass(frozen=True)
class SiteSync:
    """The state of one release at one site, with the timestamps that explain it."""

    release_id: str
    site: str
    repository: str
    digest: str
    pushed_at: datetime  # the release's push time, kept on the row for per-site ordering and lag
    state: SyncState
    reason: SyncReason | None
    updated_at: datetime
    queued_at: datetime | None = None
    expected_ready_at: datetime | None = None
    synced_at: datetime | None = None
    verified_at: datetime | None = None
    stale_at: datetime | None = None
    evidence_source: EvidenceSource | None = None
    checks: int = 0  # checks run so far; the next job for this row carries this number
    next_check_at: datetime | None = None  # when the job in flight is due; the sweeper recovers lost ones
    # Head of this site's chain of signed delivery receipts for this release: how many there are and
    # the SHA-256 of the last envelope. It moves in the same conditional write as the row, and jobs
    # of one site run one at a time, so the chain has one writer and never forks.
    receipt_sequence: int = 0
    receipt_head: str | None = None
    # What the report counts beyond the state: how many times the row went STALE, and whether it
    # ever did for WINDOW_MISSED (a row that caught up later still missed its windows).
    stale_incidents: int = 0
    window_missed: bool = False
    # Whether the stores keep this row's entry in the site ledger (shared.domain.ledger): rows made
    # since the ledger exists; older ones are counted from their rows and evidence.
    in_ledger: bool = False
    # What runs at the site (shared.domain.workloads): when this digest was first seen running
    # there (the signed RUNNING receipt's time), and how many pods ran it at the last observation.
    running_since: datetime | None = None
    running_pods: int = 0
    # Since when the site's connected registry has been offline, while its last check found it so (its
    # last activity as ARM reports it): an offline site has no expected ready time, only this.
    offline_since: datetime | None = None
    # What the site still needs of the release and at what rate, once the release is weighed
    # (shared.domain.links); None while that is not known.
    transfer: Transfer | None = None

    @property
    def due_at(self) -> datetime | None:
        """When the sweeper next has work with this row; ``None`` when it never will.

        A row still on its way (pending, waiting) is due at its next check (a lost job shows as
        overdue), at its expected arrival (once that passed, a closed window may have made it
        stale before its next check) and no later than a day after the push (the shortest message
        TTL). A stale or synced row is due at its next check, if any (a lost job); final rows are
        never due. The stores index this, so a sweep reads the rows that are due, not every row of
        every recent release."""
        if self.state in _AWAITING_CHECK_ONLY:
            return self.next_check_at
        if self.state not in _ON_ITS_WAY:
            return None
        candidates = [self.next_check_at or self.updated_at, self.pushed_at + MIN_MESSAGE_TTL]
        if self.expected_ready_at is not None:
            candidates.append(self.expected_ready_at)
        return min(candidates)

    def moved_to(self, target: SyncState, reason: SyncReason | None, at: datetime, **changes: object) -> SiteSync:
        """A copy in ``target`` state; stamps the matching timestamp.

        Raises:
            IllegalTransition: ``state → target`` is not in the transitions table.
        """
        check_transition(self.state, target)
        stamps: dict[str, object] = {}
        if target is SyncState.SYNCED:
            stamps["synced_at"] = at
        elif target is SyncState.VERIFIED:
            stamps["verified_at"] = at
            stamps["synced_at"] = self.synced_at or at
        elif target is SyncState.STALE:
            stamps["stale_at"] = at
            # A retried stale row that goes straight back to stale is the same incident, not a new one.
            retried_stale = self.reason is SyncReason.OPERATOR_RETRY and self.stale_at is not None
            stamps["stale_incidents"] = self.stale_incidents + (0 if retried_stale else 1)
            stamps["window_missed"] = self.window_missed or reason is SyncReason.WINDOW_MISSED
        return replace(self, state=target, reason=reason, updated_at=at, **{**stamps, **changes})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Evidence:
    """An append-only record of one observation about one release at one site."""

    release_id: str
    site: str
    source: EvidenceSource
    observed_at: datetime
    recorded_at: datetime
    summary: str
    state_from: SyncState | None = None
    state_to: SyncState | None = None
    reason: SyncReason | None = None
    observed_digest: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def evidence_id(self) -> str:
        """Deterministic: recording the same observation twice (a retried write) yields the same id."""
        material = "\n".join(
            [
                self.release_id,
                self.site,
                self.source.value,
                self.observed_at.isoformat(),
                self.state_from.value if self.state_from else "",
                self.state_to.value if self.state_to else "",
                self.observed_digest or "",
                self.summary,
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A value read from the store together with the ETag that guards a conditional write."""

    value: T
    etag: str


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``continuation`` is opaque and ``None`` on the last page."""

    items: list[T]
    continuation: str | None = None
