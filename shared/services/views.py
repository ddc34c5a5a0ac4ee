"""View models of the dashboard: one answer per page, tagged from stored versions.

A page refresh is one request, and a refresh of a page whose data did not change is a 304 that reads
versions, not rows. The fleet matrix shows one page of releases against every site, with a roll-up per
ring, the sites' health as the rows show it, and alerts grouped per site; rings and sites come in the
order of the sites file. Views never depend on the time of the request (the browser renders "5 min ago").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.gate import GatePolicy, GateSelection
from shared.domain.model import Release, Site, SiteSync
from shared.domain.states import READY_STATES, SyncState
from shared.errors import InvalidInput
from shared.services import status
from shared.services.dependencies import Dependencies
from shared.services.rows import tally

DEFAULT_MATRIX_RELEASES = 20
MAX_MATRIX_RELEASES = 50
MAX_RELEASE_PAGE_EVIDENCE = 100
# Sites with rows in these states are what a release manager must look at.
_ALERTING = (SyncState.STALE, SyncState.FAILED)
_ON_ITS_WAY = frozenset({SyncState.PENDING, SyncState.WAITING_FOR_WINDOW})


@dataclass(frozen=True)
class TaggedView:
    """A view's tag (known before it is built) and how to build it."""

    tag: str
    build: Callable[[], dict[str, Any]]


def ordered_sites(sites: Iterable[Site]) -> list[tuple[str, list[Site]]]:
    """Rings with their sites, in the order the sites file gives (sites stored without a position come
    after, by name)."""

    def key(site: Site) -> tuple[int, int, str]:
        return (0, site.position, site.name) if site.position is not None else (1, 0, site.name)

    rings: dict[str, list[Site]] = {}
    for site in sorted(sites, key=key):
        rings.setdefault(site.ring, []).append(site)
    return list(rings.items())


# -- the fleet matrix ----------------------------------------------------------------------------


def matrix(
    services: Dependencies,
    *,
    repository: str | None = None,
    ring: str | None = None,
    top: int = DEFAULT_MATRIX_RELEASES,
    continuation: str | None = None,
) -> TaggedView:
    """One page of releases (newest push first) against every site, or one ring's sites.

    The tag reads the page of release headers and one version per release shown; building reads their rows.

    Raises:
        InvalidInput: ``INVALID_CONTINUATION``, ``UNKNOWN_RING``.
    """
    page = services.store.list_releases(repository=repository, page_size=top, continuation=continuation)
    releases = list(page.items)
    versions = [(release.release_id, status.release_version(services, release.release_id)) for release in releases]
    rings = ordered_sites(services.catalog.sites())
    if ring is not None:
        rings = [(name, sites) for name, sites in rings if name == ring]
        if not rings:
            raise InvalidInput("UNKNOWN_RING", "no site belongs to that ring")
    tag = status.version_tag(
        "matrix", services.catalog.fingerprint(), repository, ring, top, continuation, page.continuation, versions
    )
    return TaggedView(tag, lambda: _matrix_view(services, releases, rings, page.continuation, top))


def _matrix_view(
    services: Dependencies,
    releases: Sequence[Release],
    rings: Sequence[tuple[str, list[Site]]],
    continuation: str | None,
    top: int,
) -> dict[str, Any]:
    columns = [site for _, sites in rings for site in sites]
    rows_by_release = {
        release.release_id: {v.value.site: v.value for v in services.store.list_site_syncs(release.release_id)}
        for release in releases
    }
    # Each site's rows among the releases shown, newest release first: its header and its alert.
    per_site = {
        site.name: [rows[site.name] for rows in rows_by_release.values() if site.name in rows] for site in columns
    }
    headers = {site.name: _site_header(site, per_site[site.name]) for site in columns}
    return {
        "rings": [{"name": name, "sites": [headers[site.name] for site in sites]} for name, sites in rings],
        "releases": [_matrix_release(release, rows_by_release[release.release_id], rings) for release in releases],
        "alerts": _alerts(columns, headers, per_site),
        "page": {"shown": len(releases), "top": top, "continuation": continuation},
    }


def _matrix_release(
    release: Release, rows: dict[str, SiteSync], rings: Sequence[tuple[str, list[Site]]]
) -> dict[str, Any]:
    return {
        "id": release.release_id,
        "repository": release.repository,
        "tags": sorted(release.tags),
        "digest": release.digest,
        "pushed_at": status.iso(release.pushed_at),
        "withdrawn_at": status.iso(release.withdrawn_at),
        "rings": [_roll_up(name, [rows.get(site.name) for site in sites]) for name, sites in rings],
        "cells": [_cell(rows.get(site.name)) for _, sites in rings for site in sites],
    }


def _roll_up(ring: str, rows: Sequence[SiteSync | None]) -> dict[str, Any]:
    in_scope = [row for row in rows if row is not None and row.state is not SyncState.SKIPPED]
    counts = tally(in_scope)
    return {
        "ring": ring,
        "total": len(in_scope),
        "ready": sum(counts.get(state, 0) for state in READY_STATES),
        "pending": sum(counts.get(state, 0) for state in _ON_ITS_WAY),
        "stale": counts.get(SyncState.STALE, 0),
        "failed": counts.get(SyncState.FAILED, 0),
        "withdrawn": counts.get(SyncState.WITHDRAWN, 0),
        "running": sum(1 for row in in_scope if row.running_pods > 0),
    }


def _cell(row: SiteSync | None) -> dict[str, Any] | None:
    """A site's row in the matrix, with nulls left out (most cells are one state)."""
    if row is None:
        return None
    cell: dict[str, Any] = {"state": row.state.value}
    optional = {
        "reason": row.reason.value if row.reason else None,
        "expected_ready_at": status.iso(row.expected_ready_at) if row.state in _ON_ITS_WAY else None,
        "offline_since": status.iso(row.offline_since),
        "running_pods": row.running_pods or None,
        "running_since": status.iso(row.running_since),
    }
    cell.update({key: value for key, value in optional.items() if value is not None})
    return cell


def _site_header(site: Site, rows: Sequence[SiteSync]) -> dict[str, Any]:
    """A site's column header: what its rows among the releases shown say of its health."""
    offline = [row.offline_since for row in rows if row.offline_since is not None]
    delivered = [t for row in rows for t in (row.synced_at, row.verified_at) if t is not None]
    return {
        "name": site.name,
        "critical": site.critical,
        "offline_since": status.iso(min(offline)) if offline else None,
        "last_delivery_at": status.iso(max(delivered)) if delivered else None,
        "stale": sum(1 for row in rows if row.state is SyncState.STALE),
        "failed": sum(1 for row in rows if row.state is SyncState.FAILED),
    }


def _alerts(
    columns: Sequence[Site], headers: dict[str, dict[str, Any]], per_site: dict[str, list[SiteSync]]
) -> list[dict[str, Any]]:
    """One alert per site with stale or failed rows among the releases shown (its header's figures and
    their reasons), critical sites first, then the sites with the most such rows."""
    alerts = []
    for site in columns:
        header = headers[site.name]
        if not header["stale"] and not header["failed"]:
            continue
        reasons = {row.reason.value for row in per_site[site.name] if row.state in _ALERTING and row.reason}
        figures = {key: header[key] for key in ("critical", "offline_since", "stale", "failed")}
        alerts.append({"site": site.name, **figures, "reasons": sorted(reasons)})
    alerts.sort(key=lambda a: (not a["critical"], -(a["stale"] + a["failed"]), a["site"]))
    return alerts


# -- the release page ----------------------------------------------------------------------------


def release_page(services: Dependencies, release_id: str) -> TaggedView | None:
    """The release with its rows, the default gate's answer and its newest evidence: tagged from stored
    versions when this process has answered the gate for them (else ``None``: build with
    :func:`build_release_page`, which tags what it built).

    Raises:
        ReleaseNotFound: no such release.
    """
    version = status.release_version(services, release_id)
    known = status.readiness_revalidation(services, release_id, GateSelection(), GatePolicy(), version=version)
    if known is None:
        return None
    tag = status.version_tag("release-page", status.release_detail_tag(services, release_id, version=version), known[0])
    return TaggedView(tag, lambda: build_release_page(services, release_id)[1])


def build_release_page(services: Dependencies, release_id: str) -> tuple[str, dict[str, Any]]:
    """The release page and its tag, from one read of the release. Raises: ReleaseNotFound."""
    read = status.read_release(services, release_id)
    gate = status.readiness(services, release_id, GateSelection(), GatePolicy(), read=read)
    evidence = services.store.list_evidence(release_id)
    newest = sorted(evidence, key=lambda e: (e.observed_at, e.evidence_id), reverse=True)[:MAX_RELEASE_PAGE_EVIDENCE]
    view = {
        "release": status.release_detail(services, release_id, read=read),
        "gate": gate.view,
        "evidence": [status.evidence_view(record) for record in newest],
        "evidence_total": len(evidence),
    }
    detail_tag = status.release_detail_tag(services, release_id, version=read.version)
    return status.version_tag("release-page", detail_tag, gate.tag), view
