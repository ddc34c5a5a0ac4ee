"""Read models for the status API: sites, releases, readiness, evidence and the local event outbox.

Every view is a plain JSON-ready ``dict`` (ISO 8601 times, enum values as strings), so the HTTP
layer only maps it to a response and hashes it for the ETag; nothing here knows about HTTP.
Release and readiness views do not depend on the time of the request, so an unchanged release
answers with an unchanged ETag (a site's ``next_window`` does move with time).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.domain.annotations import Annotations, RunbookField
from shared.domain.gate import (
    GatePolicy,
    GateSelection,
    GateSite,
    GateVerdict,
    evaluate,
    passed_moments,
    retry_after,
)
from shared.domain.links import LinkRate
from shared.domain.model import Evidence, Release, Site, SiteSync, Versioned
from shared.domain.names import validate_digest, validate_repository, validate_site_name, validate_tag
from shared.domain.observations import ConnectionState, OutboundEvent
from shared.domain.states import READY_STATES
from shared.domain.windows import format_duration, window_at_or_after
from shared.errors import AcrSyncError, InvalidInput, NotFound, OutboxNotAvailable, ReleaseNotFound, SiteNotFound
from shared.services import governance, rollback, workloads
from shared.services.dependencies import Dependencies
from shared.services.lookup import recent_site_rows, require_release, require_site
from shared.services.rows import tally

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
MAX_EVENTS = 1000
# A site's latest release per repository comes from its newest rows: at most this many pages of them.
SITE_HISTORY_PAGES = 5
SITE_HISTORY_PAGE_SIZE = 100
EVIDENCE_CSV_COLUMNS = (
    "release_id",
    "site",
    "observed_at",
    "recorded_at",
    "source",
    "state_from",
    "state_to",
    "reason",
    "observed_digest",
    "summary",
    "details",
)


@dataclass(frozen=True)
class ListPage:
    """One page of a listing; ``continuation`` is ``None`` on the last page."""

    value: list[dict[str, Any]]
    continuation: str | None = None


# -- sites -------------------------------------------------------------------------------------


def list_sites(services: Dependencies) -> list[dict[str, Any]]:
    """Every site, ordered by name (no ARM calls: ``connection_state`` is null here, and ``tokens`` is what
    the sweeper last found in this process; see :mod:`shared.services.governance`)."""
    now = services.clock.now()
    return [
        {**site_view(site, now), "tokens": governance.cached_tokens_view(services, site.name)}
        for site in services.store.list_sites()
    ]


def site_detail(services: Dependencies, name: str) -> dict[str, Any]:
    """One site with its connected registry's state (best effort) and its latest release per repository.

    Raises:
        InvalidInput: ``INVALID_SITE_NAME``.
        SiteNotFound: no such site.
    """
    validate_site_name(name)
    site = require_site(services.store, name)
    view = site_view(site, services.clock.now(), connection_state=_connection_state(services, site))
    view["repositories_state"] = _repositories_state(services, site.name)
    view["tokens"] = governance.live_tokens_view(services, site)  # read now, best effort (null)
    view.update(workloads.runtime_view(workloads.site_runtime(services, site.name)))
    return view


def site_view(site: Site, now: datetime, *, connection_state: str | None = None) -> dict[str, Any]:
    window = window_at_or_after(site.schedule, site.sync_window, now)
    return {
        "name": site.name,
        "ring": site.ring,
        "critical": site.critical,
        "owner": site.owner,
        "repositories": list(site.repositories),
        "tags": site.tag_policy.as_dict(),
        "schedule": site.schedule,
        "sync_window": format_duration(site.sync_window) if site.sync_window is not None else None,
        "message_ttl": format_duration(site.message_ttl),
        "connected_registry": site.connected_registry,
        "endpoint": _without_credentials(site.endpoint),
        "stale_after_windows": site.stale_after_windows,
        "next_window": {"opens_at": iso(window.opens_at), "closes_at": iso(window.closes_at)},
        "connection_state": connection_state,
        "cluster_id": site.cluster_id,
        "log_analytics_workspace_id": site.log_analytics_workspace_id,
        "reporter": site.reporter,
        "link": {"bandwidth_bps": site.bandwidth_bps} if site.bandwidth_bps is not None else None,
    }


def _without_credentials(endpoint: str | None) -> str | None:
    """The endpoint without ``user:password@``: sites files refuse credentials in endpoints now, but a site
    stored before may still hold some, and views are read by anyone with ``Status.Read``. An endpoint
    that still shows an ``@`` after that (it does not parse as a URL) is not shown at all."""
    if endpoint is None:
        return None
    try:
        parts = urlsplit(endpoint)
    except ValueError:
        return None if "@" in endpoint else endpoint
    shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else endpoint
    return None if "@" in shown else shown


def _connection_state(services: Dependencies, site: Site) -> str | None:
    if not site.connected_registry:
        return None
    try:
        return services.arm.get_connected_registry(site.connected_registry).connection_state.value
    except AcrSyncError as exc:
        logger.info("connection state of site %s unknown (%s)", site.name, type(exc).__name__)
        return ConnectionState.UNKNOWN.value


def _repositories_state(services: Dependencies, site: str) -> list[dict[str, Any]]:
    store = services.store
    latest: dict[str, SiteSync] = {}
    for row in recent_site_rows(store, site, pages=SITE_HISTORY_PAGES, page_size=SITE_HISTORY_PAGE_SIZE):
        latest.setdefault(row.repository, row)  # newest release first: the first row of a repository is its latest
    states = []
    for repository in sorted(latest):
        row = latest[repository]
        try:
            tags = sorted(store.get_release(row.release_id).value.tags)
        except NotFound:
            tags = []
        states.append(
            {
                "repository": repository,
                "release_id": row.release_id,
                "digest": row.digest,
                "tags": tags,
                "state": row.state.value,
                "reason": _value(row.reason),
                "pushed_at": iso(row.pushed_at),
                "expected_ready_at": iso(row.expected_ready_at),
                "synced_at": iso(row.synced_at),
                "verified_at": iso(row.verified_at),
            }
        )
    return states


# -- releases ----------------------------------------------------------------------------------


def list_releases(
    services: Dependencies,
    *,
    repository: str | None = None,
    tag: str | None = None,
    digest: str | None = None,
    top: int = DEFAULT_PAGE_SIZE,
    continuation: str | None = None,
) -> ListPage:
    """Published releases, newest push first.

    Raises:
        InvalidInput: ``INVALID_REPOSITORY``, ``INVALID_TAG``, ``INVALID_DIGEST``, ``INVALID_TOP``,
            ``INVALID_CONTINUATION``.
    """
    if repository is not None:
        validate_repository(repository)
    if tag is not None:
        validate_tag(tag)
    if digest is not None:
        validate_digest(digest)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_PAGE_SIZE:
        raise InvalidInput("INVALID_TOP", f"top must be a whole number from 1 to {MAX_PAGE_SIZE}")
    if continuation is not None and not continuation:
        raise InvalidInput("INVALID_CONTINUATION", "the continuation token is empty")
    page = services.store.list_releases(
        repository=repository, tag=tag, digest=digest, page_size=top, continuation=continuation
    )
    return ListPage([release_view(release) for release in page.items], page.continuation)


def count_rows(rows: Sequence[SiteSync]) -> dict[str, int]:
    """Rows per state, counted from the rows themselves (exact for the answer that shows them)."""
    return {state.value: n for state, n in tally(rows).items()}


def release_view(
    release: Release, *, counts: dict[str, int] | None = None, counts_as_of: datetime | None = None
) -> dict[str, Any]:
    """The release header: identity, tags, push metadata and rows per state.

    Without ``counts`` the header's own are shown, as of when the release was last summarised
    (``counts_as_of``: they may lag the rows by one summary interval)."""
    if counts is None:
        counts = {state.value: n for state, n in release.counts.items() if n}
        counts_as_of = release.counts_as_of
    return {
        "id": release.release_id,
        "registry": release.registry,
        "repository": release.repository,
        "digest": release.digest,
        "image": release.image_ref,
        "tags": sorted(release.tags),
        "media_type": release.media_type,
        "size": release.size,
        "kind": release.kind.value,
        "pushed_at": iso(release.pushed_at),
        "actor": release.actor,
        "withdrawn_at": iso(release.withdrawn_at),
        "counts": dict(sorted(counts.items())),
        "counts_as_of": iso(counts_as_of),
        "size_bytes": release.content.size_bytes if release.content is not None else None,
        "layers": release.content.layers if release.content is not None else None,
        "platforms": list(release.content.platforms) if release.content is not None else None,
        "size_unknown_reason": release.content_unknown if release.content is None else None,
        "image_annotations": dict(release.content.annotations) if release.content is not None else None,
        "annotations": annotations_view(release.annotations),
    }


def annotations_view(annotations: Annotations | None) -> dict[str, Any]:
    """Every runbook field (``null`` when not set), and who set the last change and when."""
    fields = annotations.fields if annotations else {}
    view: dict[str, Any] = {name.value: fields.get(name) for name in RunbookField}
    view["set_by"] = annotations.set_by if annotations else None
    view["set_at"] = iso(annotations.set_at) if annotations else None
    return view


def annotation_history(annotations: Annotations | None) -> list[dict[str, Any]]:
    """Every recorded change, oldest first: when, by whom, and the fields it set (``null``: cleared)."""
    return [
        {"at": iso(change.at), "by": change.by, "changed": {name.value: v for name, v in change.changed.items()}}
        for change in (annotations.history if annotations else ())
    ]


def get_release(services: Dependencies, release_id: str) -> Release:
    """Raises: ReleaseNotFound."""
    return require_release(services.store, release_id)


def release_version(services: Dependencies, release_id: str) -> str:
    """The stored versions of the release and its rows. Raises: ReleaseNotFound."""
    try:
        return services.store.release_version(release_id)
    except NotFound as exc:
        raise ReleaseNotFound(release_id) from exc


@dataclass(frozen=True)
class ReleaseRead:
    """One read of a release for the views built from it: its stored version (read first, so a tag
    never claims more than the rows read after it show), its header and its rows."""

    version: str
    release: Release
    stored: list[Versioned[SiteSync]]

    @property
    def rows(self) -> list[SiteSync]:
        return [versioned.value for versioned in self.stored]


def read_release(services: Dependencies, release_id: str) -> ReleaseRead:
    """Raises: ReleaseNotFound."""
    version = release_version(services, release_id)
    return ReleaseRead(version, get_release(services, release_id), services.store.list_site_syncs(release_id))


def release_detail_tag(services: Dependencies, release_id: str, *, version: str | None = None) -> str:
    """A tag that changes whenever :func:`release_detail` would: from stored versions (``version``, when
    the caller has read it) and the site catalog, so a client's revalidation costs one version read and
    no rows.

    Raises:
        ReleaseNotFound: no such release.
    """
    stored = version if version is not None else release_version(services, release_id)
    return version_tag("release", release_id, stored, services.catalog.fingerprint())


def release_detail(services: Dependencies, release_id: str, *, read: ReleaseRead | None = None) -> dict[str, Any]:
    """The release with one entry per site row (ring and critical from the site catalog), from ``read``
    when the caller has read it.

    Depends only on what is stored (never on the time of the request), so :func:`release_detail_tag` tags it.

    Raises:
        ReleaseNotFound: no such release.
    """
    if read is not None:
        release, stored = read.release, read.stored
    else:
        release, stored = get_release(services, release_id), services.store.list_site_syncs(release_id)
    rows = [versioned.value for versioned in stored]
    catalog = {site.name: site for site in services.catalog.sites()}
    fingerprint = services.catalog.fingerprint()
    # Counted from the rows shown, so the counts and the list always agree within one answer: exact as
    # of the newest change among them.
    changed = max([release.pushed_at, *(row.updated_at for row in rows)])
    view = release_view(release, counts=count_rows(rows), counts_as_of=changed)
    ordered = sorted(stored, key=lambda versioned: versioned.value.site)
    row_views = _row_views(services.store)
    view["sites"] = [row_views.view(v, catalog.get(v.value.site), fingerprint) for v in ordered]
    view["adoption"] = adoption(rows)
    view["annotation_history"] = annotation_history(release.annotations)
    return view


def adoption(rows: Sequence[SiteSync]) -> dict[str, int]:
    """Sites holding the release, running it now, and ever seen running it."""
    return {
        "holding": sum(1 for row in rows if row.state in READY_STATES),
        "running": sum(1 for row in rows if row.running_pods > 0),
        "ran": sum(1 for row in rows if row.running_since is not None),
    }


class _RowViews:
    """Row views kept per (release, site) while the row's ETag and the site catalog stay the same: a poll
    of a 1,000-site release rebuilds only the rows that changed. Per process, bounded; the views are
    shared, so nothing may change them."""

    LIMIT = 50_000

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}

    def view(self, versioned: Versioned[SiteSync], site: Site | None, catalog: str) -> dict[str, Any]:
        row = versioned.value
        key = (row.release_id, row.site)
        found = self._entries.get(key)
        if found is not None and found[0] == versioned.etag and found[1] == catalog:
            return found[2]
        if len(self._entries) >= self.LIMIT:
            self._entries.clear()  # simpler than an LRU, and a poll refills what it reads
        built = _row_view(row, site)
        self._entries[key] = (versioned.etag, catalog, built)
        return built


# One set per store: release ids are deterministic, so two stores in one process hold rows of the same key.
_ROW_VIEWS: weakref.WeakKeyDictionary[Any, _RowViews] = weakref.WeakKeyDictionary()


def _row_views(store: Any) -> _RowViews:
    found = _ROW_VIEWS.get(store)
    if found is None:
        found = _ROW_VIEWS.setdefault(store, _RowViews())
    return found


def _row_view(row: SiteSync, site: Site | None) -> dict[str, Any]:
    return {
        "site": row.site,
        "ring": site.ring if site is not None else None,
        "critical": site.critical if site is not None else None,
        "state": row.state.value,
        "reason": _value(row.reason),
        "expected_ready_at": iso(row.expected_ready_at),
        "synced_at": iso(row.synced_at),
        "verified_at": iso(row.verified_at),
        "stale_at": iso(row.stale_at),
        "updated_at": iso(row.updated_at),
        "evidence_source": _value(row.evidence_source),
        "next_check_at": iso(row.next_check_at),
        "running_pods": row.running_pods,
        "running_since": iso(row.running_since),
        "offline_since": iso(row.offline_since),
        "bytes_needed": row.transfer.bytes_needed if row.transfer else None,
        "link": _link_view(row.transfer.rate if row.transfer else None),
    }


def _link_view(rate: LinkRate | None) -> dict[str, Any] | None:
    return {"bits_per_second": rate.bits_per_second, "source": rate.source.value} if rate else None


# -- readiness ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """A gate answer: the verdict, its view and ``tag``, the view's tag from stored versions (``None``
    when the answer depends on more than this release's rows: rollback checks read other releases)."""

    verdict: GateVerdict
    view: dict[str, Any]
    tag: str | None


class _GateMemos:
    """What a gate answer needs to be revalidated without its rows, per tag base (stored version,
    catalog, query): its pending sites, for Retry-After and for which estimates have passed. Bounded;
    per process."""

    SIZE = 256

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[GateSite, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[GateSite, ...] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: str, pending: tuple[GateSite, ...]) -> None:
        with self._lock:
            self._entries[key] = pending
            self._entries.move_to_end(key)
            while len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)


_GATE_MEMOS = _GateMemos()


def _gate_base(
    services: Dependencies, release_id: str, version: str, selection: GateSelection, policy: GatePolicy
) -> str:
    return version_tag("gate", release_id, version, services.catalog.fingerprint(), selection, policy)


def readiness_revalidation(
    services: Dependencies,
    release_id: str,
    selection: GateSelection,
    policy: GatePolicy,
    *,
    version: str | None = None,
) -> tuple[str, int] | None:
    """The current tag of a gate answer and its Retry-After, from stored versions alone (``version``,
    when the caller has read it), when this process has built the answer for these versions before;
    ``None`` otherwise (build it).

    Raises:
        ReleaseNotFound: no such release.
    """
    if policy.require_rollback:
        return None
    stored = version if version is not None else release_version(services, release_id)
    base = _gate_base(services, release_id, stored, selection, policy)
    pending = _GATE_MEMOS.get(base)
    if pending is None:
        return None
    now = services.clock.now()
    return version_tag(base, passed_moments(pending, now)), retry_after(pending, now)


def readiness(
    services: Dependencies,
    release_id: str,
    selection: GateSelection,
    policy: GatePolicy,
    *,
    include_rollback: bool = False,
    read: ReleaseRead | None = None,
) -> Readiness:
    """Evaluate the readiness gate of a release (from ``read`` when the caller has read it).

    The rollback section (other releases' rows and evidence) is built only when the policy requires
    it or ``include_rollback`` asks for it; otherwise it is ``null``.

    Raises:
        ReleaseNotFound: no such release.
        InvalidInput: ``UNKNOWN_SITE``, ``UNKNOWN_RING``.
    """
    with_rollback = include_rollback or policy.require_rollback
    if read is None:
        read = read_release(services, release_id)
    release, rows = read.release, read.rows
    checks = rollback.gate_checks(services, release, rows) if with_rollback else None
    now = services.clock.now()
    verdict = evaluate(
        release, rows, services.catalog.sites(), selection=selection, policy=policy, now=now, rollback=checks
    )
    if with_rollback:
        return Readiness(verdict, gate_view(verdict), None)  # other releases' state: no tag from this one's
    base = _gate_base(services, release_id, read.version, selection, policy)
    _GATE_MEMOS.put(base, verdict.pending)
    return Readiness(verdict, gate_view(verdict), version_tag(base, passed_moments(verdict.pending, now)))


def version_tag(*parts: Any) -> str:
    """A view's tag from what it depends on (stored versions, the catalog's fingerprint, its query)."""
    return hashlib.sha256("\x1f".join(map(repr, parts)).encode()).hexdigest()[:40]


def gate_view(verdict: GateVerdict) -> dict[str, Any]:
    selection = verdict.selection
    return {
        "state": verdict.state.value,
        "release_id": verdict.release_id,
        "selection": {
            "kind": selection.kind,
            "sites": list(selection.sites) if selection.sites is not None else None,
            "ring": selection.ring,
        },
        "min_ready": verdict.policy.min_ready,
        "require_all_critical": verdict.policy.require_all_critical,
        "ready": verdict.ready,
        "total": verdict.total,
        "required": verdict.required,
        "pending": [_pending_view(entry) for entry in verdict.pending],
        "blocked": [
            {"site": e.site, "state": _value(e.state), "reason": e.reason, "critical": e.critical}
            for e in verdict.blocked
        ],
        "reasons": [{"code": failure.code.value, "sites": list(failure.sites)} for failure in verdict.reasons],
        "require_running": verdict.policy.require_running,
        "running": verdict.running,
        "stale": "blocked" if verdict.policy.stale_blocks else "pending",
        "expected_ready_at": iso(verdict.expected_ready_at),
        "expected_ready_reason": verdict.expected_ready_reason,
        "require_rollback": verdict.policy.require_rollback,
        "require_approval": verdict.policy.require_approval,
        "rollback_ready": verdict.rollback_ready,
        "rollback": None
        if verdict.rollback_ready is None
        else [
            {
                "site": check.site,
                "rollback_ready": check.ready,
                "reason": check.reason,
                "previous_release_id": check.previous_release_id,
            }
            for check in verdict.rollback
        ],
    }


def _pending_view(entry: GateSite) -> dict[str, Any]:
    return {
        "site": entry.site,
        "state": _value(entry.state),
        "reason": entry.reason,
        "critical": entry.critical,
        "expected_ready_at": iso(entry.expected_ready_at),
        "next_check_at": iso(entry.next_check_at),
        "offline_since": iso(entry.offline_since),
    }


# -- evidence ----------------------------------------------------------------------------------


def list_evidence(services: Dependencies, release_id: str, *, site: str | None = None) -> list[Evidence]:
    """Evidence of a release (optionally one site), oldest observation first.

    Raises:
        InvalidInput: ``INVALID_SITE_NAME``.
        ReleaseNotFound: no such release.
        SiteNotFound: ``site`` has no row in this release and is not a site.
    """
    if site is not None:
        validate_site_name(site)
    get_release(services, release_id)
    store = services.store
    if site is not None:
        try:
            store.get_site_sync(release_id, site)
        except NotFound:
            try:
                store.get_site(site)
            except NotFound as exc:
                raise SiteNotFound(site) from exc
    return store.list_evidence(release_id, site=site)


def evidence_view(evidence: Evidence) -> dict[str, Any]:
    return {
        "id": evidence.evidence_id,
        "release_id": evidence.release_id,
        "site": evidence.site,
        "observed_at": iso(evidence.observed_at),
        "recorded_at": iso(evidence.recorded_at),
        "source": evidence.source.value,
        "state_from": _value(evidence.state_from),
        "state_to": _value(evidence.state_to),
        "reason": _value(evidence.reason),
        "observed_digest": evidence.observed_digest,
        "summary": evidence.summary,
        "details": dict(evidence.details),
    }


def evidence_csv(records: Sequence[Evidence]) -> str:
    """RFC 4180 CSV with a header row; ``details`` as compact JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EVIDENCE_CSV_COLUMNS)
    for record in records:
        view = evidence_view(record)
        view["details"] = json.dumps(view["details"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        writer.writerow(["" if view[column] is None else view[column] for column in EVIDENCE_CSV_COLUMNS])
    return out.getvalue()


# -- events ------------------------------------------------------------------------------------


def list_events(services: Dependencies, *, limit: int = 100, after: str | None = None) -> ListPage:
    """The local outbox in publication order; ``continuation`` is the ``after`` of the next page.

    Raises:
        OutboxNotAvailable: events go to Event Grid.
        InvalidInput: ``INVALID_LIMIT``, ``INVALID_CURSOR``.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
        raise InvalidInput("INVALID_LIMIT", f"limit must be a whole number from 1 to {MAX_EVENTS}")
    outbox = services.outbox
    if outbox is None:
        raise OutboxNotAvailable()
    events = outbox.list_events(limit=limit + 1, after=after)
    more = len(events) > limit
    page = events[:limit]
    return ListPage([event_view(event) for event in page], page[-1].event_id if more else None)


def event_view(event: OutboundEvent) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event.event_id,
        "type": event.type.value,
        "source": event.source,
        "subject": event.subject,
        "time": iso(event.time),
        "data": dict(event.data),
    }


def iso(value: datetime | None) -> str | None:
    """ISO 8601, or ``None``: how every view shows a time."""
    return value.isoformat() if value is not None else None


def _value(value: Any) -> str | None:
    return value.value if value is not None else None
