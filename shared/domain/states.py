"""The site-sync state machine: states, reasons, evidence sources and the allowed transitions."""

from __future__ import annotations

from enum import StrEnum

from shared.errors import IllegalTransition


class SyncState(StrEnum):
    """Where one release stands at one site."""

    PENDING = "PENDING"  # in scope, no check has decided anything yet
    WAITING_FOR_WINDOW = "WAITING_FOR_WINDOW"  # the site only syncs in its window; next check at the opening
    SYNCED = "SYNCED"  # inferred present: the site synced after the push and the repository is in its scope
    VERIFIED = "VERIFIED"  # seen at the site: manifest HEAD or an edge-originated event with this digest
    STALE = "STALE"  # the site missed its windows or went silent; still expected, no longer on time
    FAILED = "FAILED"  # the digest cannot reach the site without someone acting (token, scope, site gone)
    WITHDRAWN = "WITHDRAWN"  # the release was deleted from the parent before it reached the site
    SKIPPED = "SKIPPED"  # the site is out of scope for this release (repository or tag policy)


class SyncReason(StrEnum):
    """Why a site-sync row is in its state; machine-readable, shown to release managers."""

    AWAITING_FIRST_CHECK = "AWAITING_FIRST_CHECK"
    WINDOW_CLOSED = "WINDOW_CLOSED"  # expected offline: outside its sync window
    SYNC_IN_PROGRESS = "SYNC_IN_PROGRESS"  # window open, digest not there yet
    EXCEEDS_WINDOW = "EXCEEDS_WINDOW"  # what the site still needs does not fit the next window at its link's rate
    WINDOW_MISSED = "WINDOW_MISSED"  # late: windows passed, digest still missing
    SITE_SILENT = "SITE_SILENT"  # silent: no activity from the site for several windows
    MESSAGE_TTL_EXPIRED = "MESSAGE_TTL_EXPIRED"  # the parent dropped the sync message
    SITE_OFFLINE = "SITE_OFFLINE"
    SITE_UNHEALTHY = "SITE_UNHEALTHY"
    SITE_NOT_FOUND = "SITE_NOT_FOUND"
    SITE_INACTIVE = "SITE_INACTIVE"
    REPO_NOT_IN_SCOPE = "REPO_NOT_IN_SCOPE"  # not approved for the site, or missing from its sync scope map
    TAG_NOT_ADMITTED = "TAG_NOT_ADMITTED"  # the site's tag policy refuses every tag of the release
    SYNC_TOKEN_EXPIRED = "SYNC_TOKEN_EXPIRED"  # noqa: S105 - a reason code, not a credential
    TRANSFER_FAILED = "TRANSFER_FAILED"
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    MAX_DELIVERIES_EXCEEDED = "MAX_DELIVERIES_EXCEEDED"
    MANIFEST_PRESENT = "MANIFEST_PRESENT"
    EDGE_EVENT_RECEIVED = "EDGE_EVENT_RECEIVED"
    SYNCED_AFTER_PUSH = "SYNCED_AFTER_PUSH"
    RELEASE_DELETED = "RELEASE_DELETED"
    OPERATOR_RETRY = "OPERATOR_RETRY"
    SCOPE_GREW = "SCOPE_GREW"


class EvidenceSource(StrEnum):
    """Who observed what an evidence record states."""

    ARM_LAST_SYNC = "arm-last-sync"
    CONNECTED_REGISTRY_EVENT = "connected-registry-event"
    OCI_PROBE = "oci-probe"
    SITE_REPORT = "site-report"  # the site's own reporter (acrsync agent), or the simulation playing it
    CONTAINER_INSIGHTS = "container-insights"  # Azure Monitor Container Insights on the site's Arc cluster
    OPERATOR = "operator"
    PARENT_REGISTRY_EVENT = "parent-registry-event"
    SCHEDULE = "schedule"  # acrsync's own window arithmetic (waiting, late, stale decisions)
    QUEUE = "queue"  # the job queue gave up on the check (dead-letter)


READY_STATES = frozenset({SyncState.SYNCED, SyncState.VERIFIED})
# States in which a job has nothing left to do; a job for such a row completes without work.
TERMINAL_STATES = frozenset({SyncState.VERIFIED, SyncState.FAILED, SyncState.WITHDRAWN, SyncState.SKIPPED})

_S = SyncState
ALLOWED_TRANSITIONS: dict[SyncState, frozenset[SyncState]] = {
    _S.PENDING: frozenset(
        {_S.WAITING_FOR_WINDOW, _S.SYNCED, _S.VERIFIED, _S.STALE, _S.FAILED, _S.WITHDRAWN, _S.SKIPPED}
    ),
    _S.WAITING_FOR_WINDOW: frozenset({_S.SYNCED, _S.VERIFIED, _S.STALE, _S.FAILED, _S.WITHDRAWN}),
    # SYNCED is an inference; only direct proof improves it. It never goes back: no flapping.
    _S.SYNCED: frozenset({_S.VERIFIED}),
    _S.VERIFIED: frozenset(),
    # A stale site that catches up moves forward, never back to waiting (no flapping while retrying).
    _S.STALE: frozenset({_S.SYNCED, _S.VERIFIED, _S.FAILED, _S.WITHDRAWN, _S.PENDING}),
    # Late proof (an edge event) or an operator's retry can still move a failed row.
    _S.FAILED: frozenset({_S.SYNCED, _S.VERIFIED, _S.WITHDRAWN, _S.PENDING}),
    _S.WITHDRAWN: frozenset(),
    # Backfill: the site's scope grew to include the release.
    _S.SKIPPED: frozenset({_S.PENDING}),
}


def check_transition(current: SyncState, target: SyncState) -> None:
    """Raise :class:`IllegalTransition` unless ``current → target`` is in the allowed-transitions table."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(f"a site-sync row cannot move from {current.value} to {target.value}")
