"""Ingest: ACR events become releases, fan-outs, withdrawals and edge evidence.

Every path is idempotent: Event Grid delivers at least once, unordered, sometimes twice. A release
is (registry, repository, digest); the same event id, a re-push of the same digest, or an edge
event that overtakes its parent's never creates a second release, row or first job.

Untagged pushes (the per-platform children of a multi-arch index, pushes by digest) are not
releases: they are acknowledged and ignored. The tagged push that names the index or image is the
release sites should get, and the connected registry pulls its children along with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.acr_events import (
    DecodedEvent,
    OtherEvent,
    RegistryEvent,
    ValidationRequest,
    decode_event,
    parse_delivery,
)
from shared.domain.changes import RowChange
from shared.domain.messages import JobKind
from shared.domain.model import Evidence, Release, Site, SiteSync
from shared.domain.states import ALLOWED_TRANSITIONS, READY_STATES, EvidenceSource, SyncReason, SyncState
from shared.errors import AlreadyExists, InvalidInput, NotFound
from shared.logs import log_context
from shared.observability import traced
from shared.ports import StateStore
from shared.services.dependencies import Dependencies
from shared.services.fanout import fan_out_new, new_row, plan_fanout, resume_fan_out, widen_fan_out
from shared.services.receipts import receipt_hook
from shared.services.rows import Decision, earliest_due, modify_release, recount, release_loader, update_row
from shared.services.summaries import schedule_summary, summary_message

logger = logging.getLogger(__name__)

# Rows a deletion withdraws: the digest has not reached the site and now never will.
_WITHDRAWABLE = frozenset({SyncState.PENDING, SyncState.WAITING_FOR_WINDOW, SyncState.STALE, SyncState.FAILED})


class IngestOutcome(StrEnum):
    RELEASE_CREATED = "release-created"
    FANOUT_RESUMED = "fanout-resumed"
    TAGS_ADDED = "tags-added"
    DUPLICATE = "duplicate"
    WITHDRAWN = "withdrawn"
    EDGE_RECORDED = "edge-recorded"
    IGNORED_UNTAGGED = "ignored-untagged"
    IGNORED_UNKNOWN_SITE = "ignored-unknown-site"
    IGNORED_EVENT_TYPE = "ignored-event-type"
    IGNORED_WITHDRAWN = "ignored-withdrawn"
    IGNORED_TAG_LIMIT = "ignored-tag-limit"
    REJECTED = "rejected"


@dataclass(frozen=True)
class IngestResult:
    event_id: str
    outcome: IngestOutcome
    release_id: str | None = None
    rows_created: int = 0
    jobs_sent: int = 0
    # Why a REJECTED event was refused: the InvalidInput code and detail.
    code: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    """What a webhook delivery did, one result per event in delivery order; ``validation_code``
    answers Event Grid's handshake when the delivery carried one."""

    results: list[IngestResult]
    validation_code: str | None = None

    @property
    def accepted(self) -> list[IngestResult]:
        return [result for result in self.results if result.outcome is not IngestOutcome.REJECTED]


def ingest_delivery(services: Dependencies, body: bytes, content_type: str | None) -> DeliveryReport:
    """Handle one webhook delivery, as the Functions host hands its events to the trigger: each valid
    event is handled, each malformed one is reported as REJECTED with its code and changes nothing.

    Raises:
        InvalidInput: the delivery itself is malformed, or it holds no valid event (nothing changed).
        TransientError: the store or queue failed (answer 5xx so Event Grid retries).
    """
    with traced("acrsync.ingest.delivery"):
        return ingest_events(services, parse_delivery(body, content_type))


def ingest_events(services: Dependencies, raw_events: Sequence[Mapping[str, Any]]) -> DeliveryReport:
    """Handle the events of one delivery, already parsed. Every event is decoded before anything is
    written; a validation handshake among them is answered and the other events are still handled.

    Raises:
        InvalidInput: every event is malformed (nothing changed).
        TransientError: the store or queue failed.
    """
    decoded = [_decoded_or_refused(services, raw) for raw in raw_events]
    require_one_accepted([item for item in decoded if isinstance(item, IngestResult)], of=len(decoded))
    validation = next((item for item in decoded if isinstance(item, ValidationRequest)), None)
    if validation is not None:
        logger.info("answered Event Grid subscription validation %s", validation.event_id)
    results = [
        item if isinstance(item, IngestResult) else handle_event(services, item)
        for item in decoded
        if item is not validation
    ]
    return DeliveryReport(results=results, validation_code=validation.validation_code if validation else None)


def ingest_event(services: Dependencies, raw: Mapping[str, Any]) -> IngestResult:
    """Handle one event on its own, as the Functions Event Grid trigger hands them over. A poison event is
    logged and dropped (returning normally completes it); transient errors propagate so Event Grid
    redelivers."""
    decoded = _decoded_or_refused(services, raw)
    return decoded if isinstance(decoded, IngestResult) else handle_event(services, decoded)


def require_one_accepted(refused: Sequence[IngestResult], *, of: int) -> None:
    """Refuse a delivery in which no event could be taken, with the first event's problem.

    Raises:
        InvalidInput: every one of the ``of`` events was refused (nothing changed).
    """
    if not refused or len(refused) < of:
        return
    first = refused[0]
    detail = first.detail or "the event is malformed"
    if of > 1:
        detail = f"all {of} events were refused; the first ({first.event_id}): {detail}"
    raise InvalidInput(first.code or "MALFORMED_EVENT", detail)


def _decoded_or_refused(services: Dependencies, raw: Mapping[str, Any]) -> DecodedEvent | IngestResult:
    try:
        return decode_event(raw, registry_hint=services.settings.registry)
    except InvalidInput as problem:
        event_id = _shown_id(raw)
        logger.warning("dropped event %s: %s (%s)", event_id, problem.code, problem.detail)
        return IngestResult(event_id, IngestOutcome.REJECTED, code=problem.code, detail=problem.detail)


def _shown_id(raw: Mapping[str, Any]) -> str:
    """The event's id as a report may quote it: short and printable, whatever was sent."""
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not event_id:
        return "?"
    shown = event_id[:MAX_SHOWN_ID_CHARS].encode("utf-8", "replace").decode("utf-8")
    return "".join(c if c.isprintable() else "?" for c in shown)


MAX_SHOWN_ID_CHARS = 64


def handle_event(services: Dependencies, event: RegistryEvent | ValidationRequest | OtherEvent) -> IngestResult:
    if isinstance(event, OtherEvent | ValidationRequest):
        kind = event.event_type if isinstance(event, OtherEvent) else "validation"
        logger.info("ignored event %s of type %s", event.event_id, kind)
        return IngestResult(event_id=event.event_id, outcome=IngestOutcome.IGNORED_EVENT_TYPE)
    event = event.as_of_arrival(services.clock.now())
    release_id = event.release_id
    context = {
        "event_id": event.event_id,
        "release_id": release_id,
        "digest": event.digest,
        "site": event.connected_registry,
    }
    with log_context(**context), traced("acrsync.ingest.event", event_type=event.event_type.value, **context):
        if event.is_edge:
            return _record_edge_event(services, event)
        if event.event_type.is_push:
            return _register_push(services, event)
        return _withdraw(services, event)


def backfill_site(services: Dependencies, site_name: str) -> list[IngestResult]:
    """Enqueue, for a new site or one whose approved repositories grew, the current release of
    every repository it should hold (the newest published, not withdrawn release its policy admits).

    Raises:
        NotFound: no such site.
    """
    store, now = services.store, services.clock.now()
    site = store.get_site(site_name)
    latest: dict[str, Release] = {}
    token: str | None = None
    while True:
        page = store.list_releases(page_size=200, continuation=token)
        for release in page.items:
            if (
                release.repository not in latest
                and release.withdrawn_at is None
                and site.admits(release.repository, release.tags) is None
            ):
                latest[release.repository] = release
        token = page.continuation
        if token is None:
            break
    results = []
    for release in latest.values():
        done = widen_fan_out(store, services.queue, release, [site], now, kind=JobKind.BACKFILL)
        results.append(
            IngestResult(
                f"backfill:{site_name}", IngestOutcome.TAGS_ADDED, release.release_id, done.rows_created, done.jobs_sent
            )
        )
    logger.info("backfilled site %s with %s releases", site_name, len(results))
    return results


def _candidate(event: RegistryEvent) -> Release:
    return Release(
        registry=event.registry,
        repository=event.repository,
        digest=event.digest,
        pushed_at=event.occurred_at,
        tags=frozenset({event.tag}) if event.tag else frozenset(),
        media_type=event.media_type,
        size=event.size,
        actor=event.actor,
        kind=event.event_type.kind,
        source_event_ids=(event.event_id,),
        indexed=True,
    )


def _register_push(services: Dependencies, event: RegistryEvent) -> IngestResult:
    store, queue, now = services.store, services.queue, services.clock.now()
    if event.tag is None:
        logger.info("ignored untagged push of %s@%s", event.repository, event.digest)
        return IngestResult(event.event_id, IngestOutcome.IGNORED_UNTAGGED, event.release_id)
    candidate = _candidate(event)
    sites = services.catalog.sites()
    plan = plan_fanout(candidate, sites, now)
    try:
        store.create_release(
            replace(candidate, counts=plan.counts, counts_as_of=now, next_due_at=earliest_due(plan.rows))
        )
    except AlreadyExists:
        return _register_known_push(services, event, sites)
    # Its first summary goes with the jobs: it records the new rows in the site ledger.
    done = fan_out_new(store, queue, candidate, plan, follow_up=[summary_message(services.clock, candidate.release_id)])
    return IngestResult(
        event.event_id, IngestOutcome.RELEASE_CREATED, candidate.release_id, done.rows_created, done.jobs_sent
    )


def _register_known_push(services: Dependencies, event: RegistryEvent, sites: Sequence[Site]) -> IngestResult:
    store, queue, now = services.store, services.queue, services.clock.now()
    release_id = event.release_id
    before = store.get_release(release_id).value
    published = store.is_release_published(release_id)

    def merge(release: Release) -> Release:
        merged = release.with_event(event.event_id, frozenset({event.tag}) if event.tag else frozenset())
        if not published and event.occurred_at < merged.pushed_at:
            # An edge event created the release first; the parent's push time is the true one.
            merged = replace(merged, pushed_at=event.occurred_at, actor=merged.actor or event.actor)
        return merged

    after = modify_release(store, release_id, merge).value
    if after.withdrawn_at is not None:
        logger.info("push of withdrawn release %s recorded; no fan-out", release_id)
        return IngestResult(event.event_id, IngestOutcome.IGNORED_WITHDRAWN, release_id)
    if not published:
        done = resume_fan_out(store, queue, after, sites, now)
        return IngestResult(event.event_id, IngestOutcome.FANOUT_RESUMED, release_id, done.rows_created, done.jobs_sent)
    if event.tag is not None and event.tag not in after.tags:
        logger.warning("release %s holds %s tags already; tag %s not recorded", release_id, len(after.tags), event.tag)
        return IngestResult(event.event_id, IngestOutcome.IGNORED_TAG_LIMIT, release_id)
    if after.tags != before.tags:
        store.publish_release(after)
        done = widen_fan_out(store, queue, after, sites, now, kind=JobKind.FANOUT)
        logger.info("release %s gained tags %s", release_id, sorted(after.tags - before.tags))
        return IngestResult(event.event_id, IngestOutcome.TAGS_ADDED, release_id, done.rows_created, done.jobs_sent)
    return IngestResult(event.event_id, IngestOutcome.DUPLICATE, release_id)


def _withdraw(services: Dependencies, event: RegistryEvent) -> IngestResult:
    store, now = services.store, services.clock.now()
    release_id = event.release_id
    try:
        store.create_release(replace(_candidate(event), withdrawn_at=event.occurred_at))
        # Deleted before its push arrived (events are unordered): keep a visible tombstone.
        store.publish_release(store.get_release(release_id).value)
        return IngestResult(event.event_id, IngestOutcome.WITHDRAWN, release_id)
    except AlreadyExists:
        pass
    before = store.get_release(release_id).value
    after = modify_release(
        store,
        release_id,
        lambda r: replace(r.with_event(event.event_id), withdrawn_at=r.withdrawn_at or event.occurred_at),
    ).value
    if before == after:
        return IngestResult(event.event_id, IngestOutcome.DUPLICATE, release_id)
    for row in store.list_site_syncs(release_id):
        update_row(store, release_id, row.value.site, _withdrawal_decision(event, now))
    schedule_summary(services.queue, services.clock, release_id)
    if store.is_release_published(release_id):
        store.publish_release(after)
    logger.info("withdrew release %s after its deletion from the parent registry", release_id)
    return IngestResult(event.event_id, IngestOutcome.WITHDRAWN, release_id)


def _withdrawal_decision(event: RegistryEvent, now: datetime) -> Decision:
    def decide(row: SiteSync) -> RowChange | None:
        if row.state in _WITHDRAWABLE:
            moved = row.moved_to(
                SyncState.WITHDRAWN,
                SyncReason.RELEASE_DELETED,
                now,
                evidence_source=EvidenceSource.PARENT_REGISTRY_EVENT,
            )
            return RowChange(
                moved,
                [_evidence(row, event, now, "deleted from the parent registry before reaching the site", moved.state)],
            )
        if row.state in READY_STATES:
            # A deleted parent image may still run at the edge: that is evidence, not an error.
            note = _evidence(row, event, now, "deleted from the parent registry; still present at the site", row.state)
            return RowChange(row, [note])
        return None

    return decide


def _record_edge_event(services: Dependencies, event: RegistryEvent) -> IngestResult:
    store, now = services.store, services.clock.now()
    site = _site_for(services.catalog.sites(), event.connected_registry or "")
    release_id = event.release_id
    if site is None:
        logger.info("ignored edge event from unknown connected registry %s", event.connected_registry)
        return IngestResult(event.event_id, IngestOutcome.IGNORED_UNKNOWN_SITE, release_id)
    with log_context(site=site.name):
        if not event.event_type.is_push:
            return _record_edge_deletion(services, event, site)
        try:
            store.create_release(_candidate(event))  # the parent's event has not arrived yet
        except AlreadyExists:
            pass
        try:
            store.get_site_sync(release_id, site.name)
        except NotFound:
            release = store.get_release(release_id).value
            store.add_site_syncs(
                [new_row(release, site.name, SyncState.PENDING, SyncReason.AWAITING_FIRST_CHECK, now, expected=None)]
            )
            recount(store, release_id, now)
        signs = receipt_hook(services, site, release_loader(store, release_id))
        arrival = update_row(store, release_id, site.name, _edge_arrival(store, event, now), on_state_change=signs)
        if arrival.state_changed:
            schedule_summary(services.queue, services.clock, release_id)
    return IngestResult(event.event_id, IngestOutcome.EDGE_RECORDED, release_id)


def _record_edge_deletion(services: Dependencies, event: RegistryEvent, site: Site) -> IngestResult:
    release_id = event.release_id
    now = services.clock.now()

    def record(row: SiteSync) -> RowChange:
        # Written with the row (which stays as it is): the row's version moves with its evidence, so
        # views tagged by stored versions show the deletion.
        return RowChange(replace(row, updated_at=now), (_evidence(row, event, now, "deleted at the site", row.state),))

    try:
        update_row(services.store, release_id, site.name, record)
    except NotFound:
        return IngestResult(event.event_id, IngestOutcome.DUPLICATE, release_id)
    return IngestResult(event.event_id, IngestOutcome.EDGE_RECORDED, release_id)


def _edge_arrival(store: StateStore, event: RegistryEvent, now: datetime) -> Decision:
    def decide(row: SiteSync) -> RowChange | None:
        summary = f"connected registry {event.connected_registry} reported the digest pushed"
        if SyncState.VERIFIED in ALLOWED_TRANSITIONS[row.state]:
            moved = row.moved_to(
                SyncState.VERIFIED,
                SyncReason.EDGE_EVENT_RECEIVED,
                event.occurred_at,
                evidence_source=EvidenceSource.CONNECTED_REGISTRY_EVENT,
            )
            return RowChange(moved, [_evidence(row, event, now, summary, moved.state)])
        # No transition left: the event is late proof. Record it once, however often it is redelivered.
        recorded = store.list_evidence(row.release_id, site=row.site)
        if any(e.details.get("event_id") == event.event_id for e in recorded):
            return None
        return RowChange(row, [_evidence(row, event, now, summary, row.state)])

    return decide


def _evidence(row: SiteSync, event: RegistryEvent, now: datetime, summary: str, state_to: SyncState) -> Evidence:
    source = EvidenceSource.CONNECTED_REGISTRY_EVENT if event.is_edge else EvidenceSource.PARENT_REGISTRY_EVENT
    details = {"event_id": event.event_id, "event_type": event.event_type.value, "repository": event.repository}
    if event.tag:
        details["tag"] = event.tag
    if event.connected_registry:
        details["connected_registry"] = event.connected_registry
    return Evidence(
        release_id=row.release_id,
        site=row.site,
        source=source,
        observed_at=event.occurred_at,
        recorded_at=now,
        summary=summary,
        state_from=row.state,
        state_to=state_to,
        reason=SyncReason.EDGE_EVENT_RECEIVED if event.is_edge else SyncReason.RELEASE_DELETED,
        observed_digest=event.digest,
        details=details,
    )


def _site_for(sites: Sequence[Site], connected_registry: str) -> Site | None:
    """The site a connected registry belongs to: by its ARM id's last segment, else by name."""
    wanted = connected_registry.lower()
    for site in sites:
        if site.connected_registry and site.connected_registry.rstrip("/").rsplit("/", 1)[-1].lower() == wanted:
            return site
    return next((site for site in sites if site.name == wanted), None)
