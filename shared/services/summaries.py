"""Release summaries, off the site-check path: counts per state, release events and the checkpoint.

A site's check writes only that site's row. What the sites of a release add up to is worked out
by a release summary job instead: every row change enqueues one for its release
(:func:`schedule_summary`), with a deterministic id per release and :data:`SUMMARY_INTERVAL`, due
at the interval's end, so the queue keeps one however many sites change at once. The job
(:func:`summarize_release`) reads the release's partition once, publishes ``release.ready`` /
``release.failed`` when the rows crossed that line, signs a checkpoint over every site's receipt
head and writes the header (counts, ``counts_as_of``, the earliest due time of its rows for the
sweeper, the checkpoint) with one conditional write.
Summary jobs of one release share a session, so they run one at a time.

Listings read the header's counts, which therefore lag the rows by up to one interval (plus queue
latency) and say so with ``counts_as_of``; answers that read the rows anyway (a release's detail,
the gate, the evidence) count them instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from shared.domain.announcements import events_for_release
from shared.domain.content import ContentUnknown, ReleaseContent
from shared.domain.messages import ReleaseSummaryJob
from shared.domain.model import Release
from shared.domain.receipts import canonical_json
from shared.domain.states import SyncState
from shared.errors import ConcurrencyConflict, InvalidInput, NotFound, UpstreamRejected, UpstreamUnavailable
from shared.ports import Clock, JobQueue, OutgoingMessage
from shared.services.announce import publish
from shared.services.dependencies import Dependencies
from shared.services.receipts import sign_checkpoint
from shared.services.rows import MAX_ATTEMPTS, counted
from shared.services.transfers import plan_transfers

logger = logging.getLogger(__name__)
# Reading again cannot change these: the manifest is what it is, and a run without a reader stays so.
_FINAL_UNKNOWNS = frozenset(
    {ContentUnknown.NOT_AN_IMAGE.value, ContentUnknown.TOO_LARGE.value, ContentUnknown.NOT_READ.value}
)

SUMMARY_INTERVAL = timedelta(seconds=15)
CLOCK_MARGIN = timedelta(seconds=2)


@dataclass(frozen=True)
class SummaryResult:
    """What one summary found: the counts it wrote and whether it signed a checkpoint."""

    release_id: str
    counts: Mapping[SyncState, int]
    checkpoint_sites: int | None
    found: bool = True


def summary_job(release_id: str, now: datetime) -> tuple[ReleaseSummaryJob, datetime]:
    """The summary job that covers a change committed by ``now``, and when it is due: its interval's
    end, plus :data:`CLOCK_MARGIN` so it still runs after the change when clocks differ a little."""
    seconds = SUMMARY_INTERVAL.total_seconds()
    interval = int(now.timestamp() // seconds)
    due = datetime.fromtimestamp((interval + 1) * seconds, tz=UTC) + CLOCK_MARGIN
    return ReleaseSummaryJob(release_id, interval), due


def summary_message(clock: Clock, release_id: str) -> OutgoingMessage:
    """The message of :func:`schedule_summary`, for a caller that sends it with others."""
    job, due = summary_job(release_id, clock.now())
    return OutgoingMessage(
        message_id=job.message_id,
        body=job.encode(),
        session_id=job.session_id,
        scheduled_at=due,
        properties={"release_id": release_id, "kind": "SUMMARY"},
    )


def schedule_summary(queue: JobQueue, clock: Clock, release_id: str) -> None:
    """Make sure a summary of the release runs after a change just committed (one send; the queue
    drops duplicates).

    Call it after the write: the time is read here, so the interval is one whose summary has not
    run yet. A time read before the write could name an interval already summarised, and the
    queue would drop this summary as a duplicate of that one."""
    queue.send_messages([summary_message(clock, release_id)])


def needs_weighing(release: Release) -> bool:
    """Not weighed yet, and not for a reason that reading again cannot change."""
    return release.content is None and release.content_unknown not in _FINAL_UNKNOWNS


def weigh(services: Dependencies, release: Release) -> tuple[ReleaseContent | None, str | None]:
    """What the release weighs, read from the parent registry, or why not: never raises, so a registry
    that cannot answer never holds a summary (or fan-out) up; the next summary reads again."""
    reader = services.content_reader
    if reader is None:
        return None, ContentUnknown.NOT_READ.value
    try:
        return reader.read_content(release.repository, release.digest), None
    except InvalidInput as exc:
        return None, exc.code
    except (UpstreamUnavailable, UpstreamRejected) as exc:
        logger.info("release %s not weighed: %s", release.release_id, exc)
        return None, ContentUnknown.MANIFEST_UNREADABLE.value


def summarize_release(services: Dependencies, release_id: str) -> SummaryResult:
    """Recount the release from its rows, announce what changed and sign a checkpoint.

    Events go out before the header is written: a crash in between re-announces on redelivery
    (deterministic ids), never loses the announcement.

    Raises:
        TransientError: the store, the queue or the event sink is unavailable; redeliver.
    """
    store = services.store
    seeded = False
    weighed: tuple[ReleaseContent | None, str | None] | None = None
    for _ in range(MAX_ATTEMPTS):
        now = services.clock.now()
        try:
            header = store.get_release(release_id)
        except NotFound:
            logger.info("release %s is gone; nothing to summarise", release_id)
            return SummaryResult(release_id, {}, None, found=False)
        listed = store.list_site_syncs(release_id)
        rows = [versioned.value for versioned in listed]
        release = header.value
        if release.indexed and not release.ledger_seeded and not seeded:
            store.seed_ledger(rows)  # the rows fan-out created, off its path; kept where a save was first
            seeded = True  # once per job: a lost header race re-reads, but these rows are recorded
        updated = counted(release, rows, now)
        counts = dict(updated.counts)
        publish(services.events, events_for_release(release.counts, release, counts, now))
        checkpoint, signed = release.checkpoint, None
        if services.signer is not None:
            issued = sign_checkpoint(services.signer, release, rows)
            checkpoint, signed = canonical_json(issued["envelope"]).decode(), len(rows)
        updated = replace(updated, checkpoint=checkpoint, ledger_seeded=release.ledger_seeded or release.indexed)
        if needs_weighing(release):
            weighed = weighed or weigh(services, release)  # once per job, whatever the header races
            updated = replace(updated, content=weighed[0], content_unknown=weighed[1])
        try:
            store.replace_release(updated, etag=header.etag)
        except ConcurrencyConflict:
            continue  # ingest merged a tag or withdrew it meanwhile: summarise the fresh header
        plan_transfers(services, updated, listed, now)
        logger.info("summarised release %s: %s", release_id, {state.value: n for state, n in counts.items()})
        return SummaryResult(release_id, counts, signed)
    raise ConcurrencyConflict(f"release {release_id} kept changing under {MAX_ATTEMPTS} summary attempts")
