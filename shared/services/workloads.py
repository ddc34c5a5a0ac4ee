"""What runs at each site: recording observations and reports, and reading them back.

:func:`record_observation` is the one write path, whichever source observed (Container Insights
through the sweeper, a site's reporter through ``POST /api/sites/{site}/reports``, the simulation):

1. the containers of the site's approved repositories are grouped per (repository, digest) and each
   is matched to the release acrsync knows for it (the site's own rows first, then the release
   listing by digest; none is *drift*);
2. the site's runtime document is merged and written conditionally (one entity per site; a report
   id already applied changes nothing);
3. each row of a release whose pods started, changed or stopped is updated: the first time a digest
   is seen running there the row gets ``running_since`` and a signed ``RUNNING`` receipt in the
   site's chain with its evidence, in the row's own conditional write;
4. what is news is announced once (deterministic ids): a new pull error, a site running a digest
   older than one it has held for longer than the outdated policy, a TLS certificate expiring.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.changes import RowChange
from shared.domain.model import Evidence, Site, SiteSync
from shared.domain.names import validate_repository
from shared.domain.observations import OutboundEvent, OutboundEventType
from shared.domain.receipts import RunningSeen, canonical_json, delivery_statement, envelope_digest
from shared.domain.site_tokens import report_token, token_matches
from shared.domain.states import READY_STATES, EvidenceSource, SyncState
from shared.domain.workloads import (
    ObservationSource,
    PullError,
    RunningImage,
    SiteObservation,
    SiteRuntime,
    announcement_key,
    apply_observation,
    parse_site_report,
    running_images,
)
from shared.errors import (
    AcrSyncError,
    ConcurrencyConflict,
    Forbidden,
    NotFound,
    SiteReportsNotConfigured,
    Unauthenticated,
)
from shared.services.announce import publish
from shared.services.dependencies import Dependencies
from shared.services.lookup import recent_site_rows, require_site
from shared.services.receipts import CHAIN_DETAIL, RECEIPT_DETAIL, SEQUENCE_DETAIL, SITE_CHAIN
from shared.services.rows import Decision, release_loader, update_row

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
# The site's newest rows matched against what runs: enough for every repository's recent releases.
SITE_ROW_PAGES = 2
SITE_ROW_PAGE_SIZE = 100
MAX_ANNOUNCED = 64
# Rows of releases a site is not meant to run: out of its scope, or withdrawn from the parent.
NOT_FOR_THE_SITE = frozenset({SyncState.SKIPPED, SyncState.WITHDRAWN})

_EVIDENCE_SOURCE = {
    ObservationSource.CONTAINER_INSIGHTS: EvidenceSource.CONTAINER_INSIGHTS,
    ObservationSource.SITE_AGENT: EvidenceSource.SITE_REPORT,
    ObservationSource.SIMULATED: EvidenceSource.SITE_REPORT,
}


@dataclass(frozen=True)
class ObservationOutcome:
    """What recording one observation did."""

    site: str
    duplicate: bool  # a report id already applied: nothing changed
    running: int  # (repository, digest) pairs running at the site after it
    drift: int  # of which no release acrsync knows
    rows_updated: int
    receipts: int  # RUNNING receipts signed
    events: int
    # What the site should hold now, newest release per repository it holds (repository, digest,
    # release id): the reporter checks these at its registry next time (disconnected pulls).
    expected: tuple[tuple[str, str, str], ...] = ()


def issue_report_token(services: Dependencies, site: str) -> str:
    """The token ``site``'s reporter sends with its reports (an operator hands it to the site).

    Raises:
        SiteNotFound: no such site.
        SiteReportsNotConfigured: no report secret here.
    """
    require_site(services.store, site)
    return report_token(_report_secret(services), site)


def check_report_token(services: Dependencies, site: str, authorization: str | None) -> None:
    """Whether the request carries ``site``'s report token (``Authorization: Bearer <token>``).

    Raises:
        Unauthenticated: no token, or not this site's.
        SiteReportsNotConfigured: no report secret here.
    """
    secret = _report_secret(services)
    scheme, _, offered = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not offered.strip():
        raise Unauthenticated("send the site's report token: Authorization: Bearer <token>", scheme="Bearer")
    if not token_matches(secret, site, offered.strip()):
        raise Unauthenticated(f"that is not the report token of site {site}", scheme="Bearer")


def _report_secret(services: Dependencies) -> bytes:
    secret = services.report_secret
    if secret is None:
        raise SiteReportsNotConfigured()
    return secret


def accept_report(services: Dependencies, site: str, document: object) -> ObservationOutcome:
    """A site reporter's report: validated whole, then recorded (idempotent by its id).

    Raises:
        InvalidInput: the report is malformed (:func:`~shared.domain.workloads.parse_site_report`).
        SiteNotFound: no such site.
        Forbidden: the site does not take reports (``reporter`` is not set for it).
    """
    known = require_site(services.store, site)
    if not known.reporter:
        raise Forbidden(f"site {site} takes no reports: set reporter: true for it in the sites file")
    observation = parse_site_report(site, document, now=services.clock.now())
    return record_observation(services, observation, site=known)


def record_observation(
    services: Dependencies, observation: SiteObservation, *, site: Site | None = None
) -> ObservationOutcome:
    """Merge one observation into the site's runtime, its rows and its announcements.

    Raises:
        SiteNotFound: no such site.
        ConcurrencyConflict: the runtime kept changing (transient: the source sends again).
    """
    if site is None or site.name != observation.site:  # the caller's read saves one when it has it
        site = require_site(services.store, observation.site)
    now = services.clock.now()
    rows = _site_rows(services, site.name)
    images = None
    if observation.containers is not None:
        found = running_images(site, observation.containers, source=observation.source, at=observation.observed_at)
        images = [replace(image, release_id=_release_of(services, rows, image)) for image in found]
    merged = _merge(services, site.name, observation, images, now)
    expected = expected_at_site(rows)
    if merged is None:
        return ObservationOutcome(site.name, True, 0, 0, 0, 0, 0, expected)
    before, after = merged
    rows_updated, receipts = _update_rows(services, site, before, after, observation)
    events = _announce(services, site, after, rows, now)
    drift = sum(1 for image in after.running if image.release_id is None)
    return ObservationOutcome(site.name, False, len(after.running), drift, rows_updated, receipts, events, expected)


def expected_at_site(rows: Sequence[SiteSync]) -> tuple[tuple[str, str, str], ...]:
    """The newest release of each repository the site holds (ready), as (repository, digest, release id)."""
    newest: dict[str, SiteSync] = {}
    for row in rows:
        if row.state in READY_STATES and (
            row.repository not in newest or row.pushed_at > newest[row.repository].pushed_at
        ):
            newest[row.repository] = row
    return tuple((row.repository, row.digest, row.release_id) for _, row in sorted(newest.items()))


def _site_rows(services: Dependencies, site: str) -> list[SiteSync]:
    return list(recent_site_rows(services.store, site, pages=SITE_ROW_PAGES, page_size=SITE_ROW_PAGE_SIZE))


def _release_of(services: Dependencies, rows: Sequence[SiteSync], image: RunningImage) -> str | None:
    for row in rows:
        if row.repository == image.repository and row.digest == image.digest:
            return row.release_id
    page = services.store.list_releases(repository=image.repository, digest=image.digest, page_size=1)
    return page.items[0].release_id if page.items else None


def _merge(
    services: Dependencies,
    site: str,
    observation: SiteObservation,
    images: list[RunningImage] | None,
    now: datetime,
) -> tuple[SiteRuntime, SiteRuntime] | None:
    """The runtime before and after, written conditionally; ``None`` for a report already applied."""
    store = services.store
    for _ in range(MAX_ATTEMPTS):
        try:
            current = store.get_site_runtime(site)
            before, etag = current.value, current.etag
        except NotFound:
            before, etag = SiteRuntime(site), None
        if observation.report_id is not None and before.has_report(observation.report_id):
            return None
        change = apply_observation(before, observation, images, now=now)
        try:
            store.save_site_runtime(change.runtime, etag=etag)
        except ConcurrencyConflict:
            continue
        return before, change.runtime
    raise ConcurrencyConflict(f"the runtime of site {site} kept changing under {MAX_ATTEMPTS} attempts")


def _update_rows(
    services: Dependencies, site: Site, before: SiteRuntime, after: SiteRuntime, observation: SiteObservation
) -> tuple[int, int]:
    """Rows of known releases whose running pods changed: (rows written, RUNNING receipts signed)."""
    previous = {image.key: image for image in before.running}
    current = {image.key: image for image in after.running}
    touched: list[tuple[RunningImage, int, datetime]] = []
    for key, image in current.items():
        old = previous.get(key)
        if image.release_id is not None and (old is None or old.pods != image.pods or old.release_id is None):
            touched.append((image, image.pods, image.last_seen_at))
    for key, image in previous.items():
        if key not in current and image.release_id is not None:
            touched.append((image, 0, observation.observed_at))
    written = signed = 0
    source = _EVIDENCE_SOURCE[observation.source]
    for image, pods, at in touched:
        assert image.release_id is not None
        try:
            update = update_row(
                services.store,
                image.release_id,
                site.name,
                _running_change(services, image, pods, source, at),
            )
        except NotFound:
            continue  # a release the site has no row for (out of its scope): shown, not recorded on a row
        written += update.changed
        signed += update.changed and update.before.running_since is None and update.after.running_since is not None
    return written, signed


def _running_change(
    services: Dependencies, image: RunningImage, pods: int, source: EvidenceSource, at: datetime
) -> Decision:
    """The row change for ``pods`` of ``image`` running at ``at``: the first sighting signs a RUNNING
    receipt; later ones move the pod count, and the last pod stopping is recorded as evidence."""
    release_id = image.release_id
    assert release_id is not None
    loader = release_loader(services.store, release_id)

    def decide(row: SiteSync) -> RowChange | None:
        if row.running_since is not None:
            if row.running_pods == pods:
                return None
            summary = f"running in {pods} pod(s)" if pods else "no longer running"
            evidence = _evidence(row, source, at, summary, image) if not pods else None
            return RowChange(replace(row, running_pods=pods), [evidence] if evidence else [])
        if not pods:
            return None
        first = replace(row, running_since=image.first_seen_at, running_pods=pods)
        record = _evidence(row, source, image.first_seen_at, f"running in {pods} pod(s)", image)
        signer = services.signer
        if signer is None:
            return RowChange(first, [record])
        sequence = row.receipt_sequence + 1
        seen = RunningSeen(
            first_seen_at=image.first_seen_at,
            evidence_source=source.value,
            pods=pods,
            workloads=tuple(f"{w.namespace}/{w.kind}/{w.name}" for w in image.workloads),
        )
        envelope = signer.sign(
            delivery_statement(loader(), row, sequence=sequence, previous=row.receipt_head, window=None, running=seen)
        )
        receipt = {
            RECEIPT_DETAIL: canonical_json(envelope).decode(),
            SEQUENCE_DETAIL: str(sequence),
            CHAIN_DETAIL: SITE_CHAIN,
        }
        signed = replace(first, receipt_sequence=sequence, receipt_head=envelope_digest(envelope))
        return RowChange(signed, [replace(record, details={**record.details, **receipt})])

    return decide


def _evidence(row: SiteSync, source: EvidenceSource, at: datetime, summary: str, image: RunningImage) -> Evidence:
    workloads = ", ".join(f"{w.namespace}/{w.kind}/{w.name}" for w in image.workloads)
    return Evidence(
        release_id=row.release_id,
        site=row.site,
        source=source,
        observed_at=at,
        recorded_at=at,
        summary=summary,
        observed_digest=image.digest,
        details={"running": "true", "pods": str(image.pods), "workloads": workloads[:1000]},
    )


# -- the sweep: cloud-side observation ------------------------------------------------------------


@dataclass(frozen=True)
class ObservationSweep:
    """What one sweep's cloud-side observation did and cost."""

    sites: int  # sites naming a workspace or a cluster
    observed: int  # observations recorded
    failed: int  # reads that failed (logged; the next sweep tries again)
    log_queries: int  # Log Analytics queries sent (one per site with a workspace or cluster)
    arm_reads: int  # ARM reads (two per site with a cluster: the cluster and its extensions)


def observe_sites(services: Dependencies) -> ObservationSweep:
    """Ask Container Insights what runs at each site that names a workspace or a cluster, and ARM how
    its cluster and connected registry extension are; record what they say. One site's failure
    does not stop the others."""
    now = services.clock.now()
    sites = [site for site in services.catalog.sites() if site.log_analytics_workspace_id or site.cluster_id]
    observed = failed = queries = arm_reads = 0
    for site in sites:
        reads: list[tuple[str, Any]] = [("Container Insights", services.workload_observer.observe)]
        if site.cluster_id:
            reads.append(("Arc health", services.cluster_health.read_health))
        for what, read in reads:
            if what == "Arc health":
                arm_reads += 2
            else:
                queries += 1
            try:
                record_observation(services, read(site, now=now), site=site)
                observed += 1
            except AcrSyncError as exc:
                failed += 1
                logger.warning("site %s: %s not read (%s)", site.name, what, type(exc).__name__)
    if sites:
        logger.info(
            "observed %s sites: %s observations, %s failed, %s Log Analytics queries, %s ARM reads",
            len(sites),
            observed,
            failed,
            queries,
            arm_reads,
        )
    return ObservationSweep(len(sites), observed, failed, queries, arm_reads)


# -- announcements ------------------------------------------------------------------------------


def _announce(services: Dependencies, site: Site, runtime: SiteRuntime, rows: Sequence[SiteSync], now: datetime) -> int:
    events = [
        *(_pull_failed_event(site.name, error) for error in runtime.pull_errors),
        *outdated_events(site.name, runtime, rows, now, outdated_after=_outdated_after(services)),
        *_tls_events(services, site.name, runtime, now),
    ]
    fresh = [event for event in events if announcement_key(event.event_id) not in runtime.announced]
    if not fresh:
        return 0
    try:
        publish(services.events, fresh)
    except AcrSyncError as exc:
        logger.warning(
            "site %s: %s events not published (%s); the next observation tries again",
            site.name,
            len(fresh),
            type(exc).__name__,
        )
        return 0
    _remember(services, site.name, [announcement_key(event.event_id) for event in fresh])
    return len(fresh)


def announce_expiring_tls(services: Dependencies) -> int:
    """``acrsync.site.tls_expiring`` for every site whose registry certificate (as last reported)
    expires within the horizon, once per expiry date: the sweep's check, so a certificate ageing at a
    site that stopped reporting is still announced. Returns how many events went out."""
    now = services.clock.now()
    published = 0
    for runtime in services.store.list_site_runtimes():
        fresh = [
            event
            for event in _tls_events(services, runtime.site, runtime, now)
            if announcement_key(event.event_id) not in runtime.announced
        ]
        if not fresh:
            continue
        try:
            publish(services.events, fresh)
        except AcrSyncError as exc:
            logger.warning("site %s: TLS expiry not announced (%s)", runtime.site, type(exc).__name__)
            continue
        _remember(services, runtime.site, [announcement_key(event.event_id) for event in fresh])
        published += len(fresh)
    return published


def _remember(services: Dependencies, site: str, keys: Iterable[str]) -> None:
    """Record the announced ids on the runtime (best effort: failing, the events go out again with
    the same ids, which subscribers dedupe)."""
    ids = list(keys)
    for _ in range(MAX_ATTEMPTS):
        try:
            current = services.store.get_site_runtime(site)
            announced = tuple(dict.fromkeys((*current.value.announced, *ids)))[-MAX_ANNOUNCED:]
            services.store.save_site_runtime(replace(current.value, announced=announced), etag=current.etag)
            return
        except ConcurrencyConflict:
            continue
        except AcrSyncError as exc:
            logger.info("site %s: announced events not recorded (%s)", site, type(exc).__name__)
            return


def _outdated_after(services: Dependencies) -> timedelta:
    return services.settings.outdated_after


def outdated_events(
    site: str, runtime: SiteRuntime, rows: Sequence[SiteSync], now: datetime, *, outdated_after: timedelta
) -> list[OutboundEvent]:
    """``acrsync.site.outdated`` for every digest running at the site while a newer release of its
    repository has been held there for longer than ``outdated_after``, or should have been
    (:func:`outdated_by`)."""
    events = []
    for image in runtime.running:
        newer = outdated_by(image, rows, now, outdated_after=outdated_after)
        if newer is None:
            continue
        held = newer.state in READY_STATES
        held_since = (newer.verified_at or newer.synced_at) if held else None
        events.append(
            site_event(
                OutboundEventType.SITE_OUTDATED,
                site,
                event_id=f"{site}:outdated:{image.repository}:{image.digest}:{newer.release_id}",
                about=f"running/{image.repository}",
                at=now,
                data={
                    "site": site,
                    "repository": image.repository,
                    "running_digest": image.digest,
                    "running_release_id": image.release_id,
                    "running_since": image.first_seen_at.isoformat(),
                    "held_release_id": newer.release_id,
                    "held_digest": newer.digest,
                    "held": held,  # false: the site should hold it (in scope) and does not yet
                    "held_state": newer.state.value,
                    "held_since": held_since.isoformat() if held_since else None,
                    "outdated_after": f"PT{int(outdated_after.total_seconds())}S",
                },
            )
        )
    return events


def outdated_by(
    image: RunningImage, rows: Sequence[SiteSync], now: datetime, *, outdated_after: timedelta
) -> SiteSync | None:
    """The newest release of the image's repository, pushed after the running one, that the site has
    held for longer than ``outdated_after``, or should hold (in its scope) and was pushed longer ago
    than that; else ``None``."""
    running_pushed = next(
        (row.pushed_at for row in rows if row.repository == image.repository and row.digest == image.digest), None
    )
    newer = [
        row
        for row in rows
        if row.repository == image.repository
        and row.digest != image.digest
        and row.state not in NOT_FOR_THE_SITE
        and (running_pushed is None or row.pushed_at > running_pushed)
        and now - _due_since(row) > outdated_after
    ]
    return max(newer, key=lambda row: row.pushed_at, default=None)


def _due_since(row: SiteSync) -> datetime:
    """Since when the site should run ``row``'s release: its arrival when held, else its push."""
    arrived = row.verified_at or row.synced_at if row.state in READY_STATES else None
    return arrived or row.pushed_at


def _pull_failed_event(site: str, error: PullError) -> OutboundEvent:
    return site_event(
        OutboundEventType.SITE_PULL_FAILED,
        site,
        event_id=f"{site}:pull_failed:{error.image}:{error.reason}:{error.first_seen_at.isoformat()}",
        about="pull_errors",
        at=error.last_seen_at,
        data={"site": site, **pull_error_view(error)},
    )


def site_event(
    kind: OutboundEventType, site: str, *, event_id: str, about: str, at: datetime, data: dict[str, Any]
) -> OutboundEvent:
    """An event about ``site`` (source ``/acrsync/sites/<site>``, subject ``sites/<site>/<about>``)."""
    return OutboundEvent(event_id, kind, f"/acrsync/sites/{site}", f"sites/{site}/{about}", at, data)


def _tls_events(services: Dependencies, site: str, runtime: SiteRuntime, now: datetime) -> list[OutboundEvent]:
    expires = runtime.health.tls_expires_at
    horizon = timedelta(days=services.settings.token_expiry_horizon_days)
    if expires is None or expires - now > horizon:
        return []
    return [
        site_event(
            OutboundEventType.SITE_TLS_EXPIRING,
            site,
            event_id=f"{site}:tls:expiring:{expires.date().isoformat()}",
            about="tls",
            at=now,
            data={
                "site": site,
                "tls_expires_at": expires.isoformat(),
                "days_left": max((expires - now).days, 0),
                "expired": expires <= now,
                "horizon_days": horizon.days,
            },
        )
    ]


# -- views --------------------------------------------------------------------------------------


def site_runtime(services: Dependencies, site: str) -> SiteRuntime:
    """The site's runtime; an empty one when nothing was observed there yet."""
    try:
        return services.store.get_site_runtime(site).value
    except NotFound:
        return SiteRuntime(site)


def running_view(image: RunningImage) -> dict[str, Any]:
    return {
        "repository": image.repository,
        "digest": image.digest,
        "release_id": image.release_id,
        "tags": list(image.tags),
        "workloads": [
            {"namespace": w.namespace, "kind": w.kind, "name": w.name, "pods": w.pods} for w in image.workloads
        ],
        "pods": image.pods,
        "first_seen_at": image.first_seen_at.isoformat(),
        "last_seen_at": image.last_seen_at.isoformat(),
        "source": image.source.value,
    }


def pull_error_view(error: PullError) -> dict[str, Any]:
    return {
        "image": error.image,
        "reason": error.reason,
        "message": error.message,
        "count": error.count,
        "first_seen_at": error.first_seen_at.isoformat(),
        "last_seen_at": error.last_seen_at.isoformat(),
        "source": error.source.value if error.source else None,
    }


def health_view(runtime: SiteRuntime) -> dict[str, Any]:
    health = runtime.health
    extension = health.extension
    return {
        "cluster_connectivity": health.cluster_connectivity.value,
        "extension": (
            {"state": extension.state.value, "version": extension.version, "errors": list(extension.errors)}
            if extension is not None
            else None
        ),
        "tls_expires_at": health.tls_expires_at.isoformat() if health.tls_expires_at else None,
        "last_report_at": health.last_report_at.isoformat() if health.last_report_at else None,
        "disconnected_pull": health.disconnected_pull.value,
        "disconnected_pull_checked_at": (
            health.disconnected_pull_checked_at.isoformat() if health.disconnected_pull_checked_at else None
        ),
        "disconnected_pull_failures": list(health.disconnected_pull_failures),
    }


def fleet_running(services: Dependencies, *, repository: str | None = None) -> list[dict[str, Any]]:
    """Per site, each digest running there (of ``repository`` when given) and its release, by site.

    Raises:
        InvalidInput: ``INVALID_REPOSITORY``.
    """
    if repository is not None:
        validate_repository(repository)
    answer = []
    for runtime in services.store.list_site_runtimes():
        for image in runtime.running:
            if repository is None or image.repository == repository:
                answer.append({"site": runtime.site, **running_view(image)})
    return answer


def runtime_view(runtime: SiteRuntime) -> dict[str, Any]:
    """``running``, ``pull_errors`` and ``health`` of ``GET /api/sites/{site}``."""
    return {
        "running": [running_view(image) for image in runtime.running],
        "running_omitted": runtime.omitted_images,
        "pull_errors": [pull_error_view(error) for error in runtime.pull_errors],
        "health": health_view(runtime),
    }
