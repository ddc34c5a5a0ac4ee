"""Rollback readiness: could a site go back to the release of a repository it held before?

For one site and one repository:

* the **current** release is the newest published release of the repository that the site's policy
  admits and that is not withdrawn (what backfill would hand the site); for the readiness gate it is
  the release the gate is asked about;
* the **previous** release (N-1) is the newest release of the repository listed after the current one
  (older push) that the site's policy admits *now*, that is not withdrawn, and that reached the site:
  its row there is ``SYNCED`` or ``VERIFIED`` (a ready row never moves back, so "is" is "was");
* whether N-1 is **still present** at the site: by evidence (default) it is, unless the row's latest
  evidence record is an ``ImageDeleted``/``ChartDeleted`` event from the site's own connected
  registry; with ``fresh`` and a site that has an OCI ``endpoint``, a manifest check at the site
  answers now (unreachable or refused: unknown, ``None``). A fresh check is a read and records no
  evidence.

``rollback_ready`` holds when N-1 exists and is present. Otherwise the reason says why:
``NO_CURRENT_RELEASE``, ``NO_PREVIOUS_RELEASE``, ``PREVIOUS_WITHDRAWN`` (the only releases that
reached the site were since deleted from the parent), ``PREVIOUS_NOT_PRESENT`` or
``PREVIOUS_PRESENCE_UNKNOWN``; a ready answer says ``PREVIOUS_PRESENT``.

Cost: the repository's releases are listed newest first (pages of 50; releases newer than the
current one cost only their share of a page). Each older release some site still looks for costs
one read: a point read of the row for one site, one partition read (every row of the release) for
the gate's many sites. The walk stops once every site has its N-1 or after ``MAX_OLDER_RELEASES``
older releases. Presence by evidence costs one evidence read per distinct N-1 release. The site
route finds its repositories among the site's newest checked rows (at most
``SITE_HISTORY_PAGES`` × ``SITE_HISTORY_PAGE_SIZE``), like the site detail does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.acr_events import AcrEventType
from shared.domain.gate import RollbackCheck
from shared.domain.model import Evidence, Release, Site, SiteSync
from shared.domain.names import validate_repository, validate_site_name
from shared.domain.observations import ProbeOutcome, refused_by_site_registry
from shared.domain.states import READY_STATES, EvidenceSource, SyncState
from shared.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from shared.ports import StateStore
from shared.services.dependencies import Dependencies
from shared.services.lookup import recent_site_rows, require_site

MAX_OLDER_RELEASES = 100
RELEASES_PAGE_SIZE = 50
SITE_HISTORY_PAGES = 5
SITE_HISTORY_PAGE_SIZE = 100
_DELETIONS = frozenset({AcrEventType.IMAGE_DELETED.value, AcrEventType.CHART_DELETED.value})


class RollbackReason(StrEnum):
    PREVIOUS_PRESENT = "PREVIOUS_PRESENT"
    NO_CURRENT_RELEASE = "NO_CURRENT_RELEASE"
    NO_PREVIOUS_RELEASE = "NO_PREVIOUS_RELEASE"
    PREVIOUS_WITHDRAWN = "PREVIOUS_WITHDRAWN"
    PREVIOUS_NOT_PRESENT = "PREVIOUS_NOT_PRESENT"
    PREVIOUS_PRESENCE_UNKNOWN = "PREVIOUS_PRESENCE_UNKNOWN"


@dataclass(frozen=True)
class Presence:
    """Whether a digest is at a site: ``present`` is ``None`` when a fresh check could not tell."""

    present: bool | None
    source: str | None
    observed_at: datetime | None
    probe_error: str | None = None  # "unreachable", or "refused by the site registry: <reason>"


@dataclass(frozen=True)
class Previous:
    release: Release
    row: SiteSync
    presence: Presence


@dataclass(frozen=True)
class RepositoryRollback:
    """The rollback answer for one repository at one site."""

    site: str
    repository: str
    current: Release | None
    current_state: SyncState | None
    previous: Previous | None
    ready: bool
    reason: RollbackReason


@dataclass
class _Search:
    """Finds N-1 for several sites at once while one repository's older releases are offered newest first."""

    store: StateStore
    sites: Sequence[Site]
    found: dict[str, tuple[Release, SiteSync]] = field(default_factory=dict)
    withdrawn: dict[str, tuple[Release, SiteSync]] = field(default_factory=dict)
    examined: int = 0

    def __post_init__(self) -> None:
        self._open = {site.name: site for site in self.sites}

    @property
    def done(self) -> bool:
        return not self._open or self.examined >= MAX_OLDER_RELEASES

    def offer(self, release: Release) -> None:
        self.examined += 1
        admitting = [site for site in self._open.values() if site.admits(release.repository, release.tags) is None]
        if not admitting:
            return
        rows = self._rows(release, admitting)
        for site in admitting:
            row = rows.get(site.name)
            if row is None or row.state not in READY_STATES:
                continue
            if release.withdrawn_at is not None:
                self.withdrawn.setdefault(site.name, (release, row))
                continue
            self.found[site.name] = (release, row)
            del self._open[site.name]

    def _rows(self, release: Release, sites: Sequence[Site]) -> dict[str, SiteSync]:
        if len(sites) == 1:
            try:
                return {sites[0].name: self.store.get_site_sync(release.release_id, sites[0].name).value}
            except NotFound:
                return {}
        return {versioned.value.site: versioned.value for versioned in self.store.list_site_syncs(release.release_id)}


# -- presence -----------------------------------------------------------------------------------


def presence_from_evidence(row: SiteSync, records: Sequence[Evidence]) -> Presence:
    """Present unless the row's latest evidence is a deletion reported by the site itself."""
    mine = sorted((r for r in records if r.site == row.site), key=lambda r: (r.observed_at, r.recorded_at))
    if not mine:
        return Presence(True, _value(row.evidence_source), row.verified_at or row.synced_at)
    latest = mine[-1]
    deleted_at_site = (
        latest.source is EvidenceSource.CONNECTED_REGISTRY_EVENT and latest.details.get("event_type") in _DELETIONS
    )
    return Presence(not deleted_at_site, latest.source.value, latest.observed_at)


def probe_presence(services: Dependencies, site: Site, release: Release) -> Presence:
    """Ask the site's registry now (the site must have an ``endpoint``)."""
    assert site.endpoint is not None
    source = EvidenceSource.OCI_PROBE.value
    credentials = services.credentials.get_credentials(site.name)
    try:
        seen = services.probe.probe(site.endpoint, release.repository, release.digest, credentials=credentials)
    except UpstreamUnavailable:
        return Presence(None, source, services.clock.now(), "unreachable")
    except UpstreamRejected as exc:
        return Presence(None, source, services.clock.now(), refused_by_site_registry(str(exc)))
    return Presence(seen.outcome is ProbeOutcome.PRESENT, source, seen.observed_at)


def _conclude(
    site: Site, search: _Search, presence_of: Callable[[Release, SiteSync], Presence]
) -> tuple[Previous | None, bool, RollbackReason]:
    found = search.found.get(site.name)
    if found is None:
        withdrawn = search.withdrawn.get(site.name)
        if withdrawn is None:
            return None, False, RollbackReason.NO_PREVIOUS_RELEASE
        release, row = withdrawn
        return Previous(release, row, presence_of(release, row)), False, RollbackReason.PREVIOUS_WITHDRAWN
    release, row = found
    presence = presence_of(release, row)
    if presence.present is None:
        reason = RollbackReason.PREVIOUS_PRESENCE_UNKNOWN
    else:
        reason = RollbackReason.PREVIOUS_PRESENT if presence.present else RollbackReason.PREVIOUS_NOT_PRESENT
    return Previous(release, row, presence), presence.present is True, reason


# -- one site -----------------------------------------------------------------------------------


def site_rollback(
    services: Dependencies, site_name: str, *, repository: str | None = None, fresh: bool = False
) -> list[RepositoryRollback]:
    """Per repository of the site (or only ``repository``): current, N-1, presence, readiness.

    Raises:
        InvalidInput: ``INVALID_SITE_NAME``, ``INVALID_REPOSITORY``.
        SiteNotFound: no such site.
    """
    validate_site_name(site_name)
    if repository is not None:
        validate_repository(repository)
    store = services.store
    site = require_site(store, site_name)
    repositories = [repository] if repository is not None else _site_repositories(store, site)
    return [_repository_rollback(services, site, name, fresh=fresh) for name in repositories]


def _repository_rollback(services: Dependencies, site: Site, repository: str, *, fresh: bool) -> RepositoryRollback:
    store = services.store
    current: Release | None = None
    search = _Search(store, [site])
    for release in _releases(store, repository):
        if current is None:
            if release.withdrawn_at is None and site.admits(repository, release.tags) is None:
                current = release
            continue
        search.offer(release)
        if search.done:
            break
    if current is None:
        return RepositoryRollback(site.name, repository, None, None, None, False, RollbackReason.NO_CURRENT_RELEASE)
    try:
        current_state: SyncState | None = store.get_site_sync(current.release_id, site.name).value.state
    except NotFound:
        current_state = None

    def presence_of(release: Release, row: SiteSync) -> Presence:
        if fresh and site.endpoint:
            return probe_presence(services, site, release)
        return presence_from_evidence(row, store.list_evidence(release.release_id, site=site.name))

    previous, ready, reason = _conclude(site, search, presence_of)
    return RepositoryRollback(site.name, repository, current, current_state, previous, ready, reason)


def _site_repositories(store: StateStore, site: Site) -> list[str]:
    """Repositories the site approves that have a checked row there (its newest rows)."""
    rows = recent_site_rows(store, site.name, pages=SITE_HISTORY_PAGES, page_size=SITE_HISTORY_PAGE_SIZE)
    return sorted({row.repository for row in rows if site.approves_repository(row.repository)})


def _releases(store: StateStore, repository: str) -> Iterator[Release]:
    continuation: str | None = None
    while True:
        page = store.list_releases(repository=repository, page_size=RELEASES_PAGE_SIZE, continuation=continuation)
        yield from page.items
        continuation = page.continuation
        if continuation is None:
            return


# -- the readiness gate -------------------------------------------------------------------------


def gate_checks(services: Dependencies, release: Release, rows: Sequence[SiteSync]) -> dict[str, RollbackCheck]:
    """For every in-scope site of ``release`` (a row not SKIPPED, a site in the catalog): could it go
    back to N-1 of the same repository, by evidence? No fresh checks: the gate is polled."""
    catalog = {site.name: site for site in services.catalog.sites()}
    sites = [catalog[row.site] for row in rows if row.state is not SyncState.SKIPPED and row.site in catalog]
    if not sites:
        return {}
    store = services.store
    search = _Search(store, sites)
    started = False  # everything listed after the release itself (or pushed before it, were it unlisted)
    for older in _releases(store, release.repository):
        if older.release_id == release.release_id:
            started = True
            continue
        if not started and older.pushed_at >= release.pushed_at:
            continue
        started = True
        search.offer(older)
        if search.done:
            break
    # Evidence of each N-1, read once and grouped by site: the gate is polled, and a release has
    # a record per site and transition.
    evidence: dict[str, dict[str, list[Evidence]]] = {}

    def presence_of(previous: Release, row: SiteSync) -> Presence:
        if previous.release_id not in evidence:
            by_site: dict[str, list[Evidence]] = {}
            for record in store.list_evidence(previous.release_id):
                by_site.setdefault(record.site, []).append(record)
            evidence[previous.release_id] = by_site
        return presence_from_evidence(row, evidence[previous.release_id].get(row.site, []))

    checks = {}
    for site in sites:
        previous, ready, reason = _conclude(site, search, presence_of)
        checks[site.name] = RollbackCheck(
            site.name, ready, reason.value, previous.release.release_id if previous is not None else None
        )
    return checks


# -- views --------------------------------------------------------------------------------------


def site_rollback_view(site: str, answers: Sequence[RepositoryRollback]) -> dict[str, Any]:
    return {"site": site, "value": [rollback_view(answer) for answer in answers]}


def rollback_view(answer: RepositoryRollback) -> dict[str, Any]:
    current = answer.current
    previous = answer.previous
    return {
        "repository": answer.repository,
        "current": None
        if current is None
        else {
            "release_id": current.release_id,
            "digest": current.digest,
            "tags": sorted(current.tags),
            "state": _value(answer.current_state),
        },
        "previous": None if previous is None else _previous_view(previous),
        "rollback_ready": answer.ready,
        "reason": answer.reason.value,
    }


def _previous_view(previous: Previous) -> dict[str, Any]:
    release, presence = previous.release, previous.presence
    return {
        "release_id": release.release_id,
        "digest": release.digest,
        "tags": sorted(release.tags),
        "state": previous.row.state.value,
        "withdrawn_at": _iso(release.withdrawn_at),
        "present": presence.present,
        "evidence_source": presence.source,
        "observed_at": _iso(presence.observed_at),
        "probe_error": presence.probe_error,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _value(value: Any) -> str | None:
    return value.value if value is not None else None
