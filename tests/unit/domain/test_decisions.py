"""The site check's rules, as a release manager would state them, one table per rule.

The timeline used throughout: ``inspection/camera`` is pushed on Tuesday 24 Nov 2026 at 08:30 UTC; the
plant's connected registry syncs daily at 02:00 UTC for three hours ("0 2 * * *", PT3H), so its windows
are 25 Nov 02:00–05:00, 26 Nov 02:00–05:00, and so on. A check margin of five minutes puts the first
look into each window at 02:05. Continuous-sync cases push at the builders' ``T0`` instead.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.decisions import (
    CONTINUOUS_STALE_CYCLE,
    VERIFY_CYCLES,
    CheckDecision,
    Observations,
    apply_decision,
    decide_check,
)
from shared.domain.model import Site, SiteSync
from shared.domain.observations import (
    ConnectedRegistryState,
    ConnectionState,
    ManifestObservation,
    ProbeOutcome,
    SyncScope,
    TokenPassword,
)
from shared.domain.states import ALLOWED_TRANSITIONS, READY_STATES, EvidenceSource, SyncReason, SyncState
from shared.domain.windows import CONTINUOUS_SCHEDULE
from tests.builders import T0, make_release, make_row, make_site

PENDING = SyncState.PENDING
WAITING = SyncState.WAITING_FOR_WINDOW
SYNCED = SyncState.SYNCED
STALE = SyncState.STALE
FAILED = SyncState.FAILED
ONLINE = ConnectionState.ONLINE
OFFLINE = ConnectionState.OFFLINE
SYNCING = ConnectionState.SYNCING
UNHEALTHY = ConnectionState.UNHEALTHY

SITE = "plant-0001"
DAILY = "0 2 * * *"
THREE_HOURS = timedelta(hours=3)
ENDPOINT = "https://plant0001.edge.contoso.example"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
REGISTRY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-edge"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A UTC instant in November 2026."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


PUSHED = at(24, 8, 30)
BEFORE_PUSH = at(24, 4, 58)  # the site's last sync, in the window before the push
IN_WINDOW = at(25, 2, 40)  # inside the first window after the push

_ROW_REASON = {
    PENDING: SyncReason.AWAITING_FIRST_CHECK,
    WAITING: SyncReason.WINDOW_CLOSED,
    SYNCED: SyncReason.SYNCED_AFTER_PUSH,
    STALE: SyncReason.WINDOW_MISSED,
}


def plant(**settings: Any) -> Site:
    """The plant as configured in acrsync: a connected registry, a daily window and an OCI endpoint."""
    config: dict[str, Any] = {
        "connected_registry": "plant0001",
        "schedule": DAILY,
        "sync_window": THREE_HOURS,
        "endpoint": ENDPOINT,
    }
    config.update(settings)
    return make_site(SITE, **config)


def release_row(
    state: SyncState = PENDING,
    *,
    pushed_at: datetime = PUSHED,
    repository: str = "inspection/camera",
    checks: int = 0,
    reason: SyncReason | None = None,
    synced_at: datetime | None = None,
) -> SiteSync:
    """The row of a release at the plant, as earlier checks left it."""
    row = make_row(make_release(repository, pushed_at=pushed_at), SITE, state=state)
    source = EvidenceSource.ARM_LAST_SYNC if state is SYNCED else None
    return replace(row, checks=checks, reason=reason or _ROW_REASON[state], evidence_source=source, synced_at=synced_at)


def arm_state(
    site: Site,
    now: datetime,
    *,
    connection: ConnectionState = ONLINE,
    last_sync: datetime | None = BEFORE_PUSH,
    last_activity: datetime | None = None,
    active: bool = True,
    **sync_properties: Any,
) -> ConnectedRegistryState:
    """What ``connected_registries.get`` reports; its sync properties mirror the site's unless overridden."""
    name = site.connected_registry or "plant0001"
    state = ConnectedRegistryState(
        resource_id=f"{REGISTRY_ID}/connectedRegistries/{name}",
        name=name,
        connection_state=connection,
        observed_at=now,
        active=active,
        mode="ReadOnly",
        provisioning_state="Succeeded",
        last_activity_time=last_activity or now,
        last_sync_time=last_sync,
        schedule=site.schedule or CONTINUOUS_SCHEDULE,
        sync_window=site.sync_window,
        message_ttl=site.message_ttl,
        token_id=f"{REGISTRY_ID}/tokens/{name}-sync-token",
    )
    return replace(state, **sync_properties)


def sync_scope(
    *patterns: str,
    enabled: bool = True,
    passwords: tuple[TokenPassword, ...] = (TokenPassword("password1", datetime(2027, 5, 1, tzinfo=UTC)),),
) -> SyncScope:
    """The plant's sync token and the repositories its scope map reads (``inspection/*`` by default)."""
    return SyncScope(
        token_id=f"{REGISTRY_ID}/tokens/plant0001-sync-token",
        token_enabled=enabled,
        repository_patterns=patterns or ("inspection/*",),
        passwords=passwords,
    )


def manifest_present(row: SiteSync, now: datetime) -> ManifestObservation:
    return ManifestObservation(ProbeOutcome.PRESENT, 200, now, ENDPOINT, digest=row.digest, media_type=MANIFEST_TYPE)


def manifest_absent(now: datetime) -> ManifestObservation:
    return ManifestObservation(ProbeOutcome.ABSENT, 404, now, ENDPOINT)


def check(
    row: SiteSync,
    site: Site,
    now: datetime,
    *,
    arm: ConnectedRegistryState | None = None,
    scope: SyncScope | None = None,
    probe: ManifestObservation | None = None,
    probe_error: str | None = None,
) -> CheckDecision:
    """Decide one check; whatever it decides must be a move the state machine allows (or no move)."""
    decision = decide_check(
        row, site, Observations(now=now, arm=arm, scope=scope, probe=probe, probe_error=probe_error)
    )
    assert decision.state is row.state or decision.state in ALLOWED_TRANSITIONS[row.state]
    return decision


def assert_waits(decision: CheckDecision, now: datetime) -> None:
    """An open window is looked at again soon: between one and fifteen minutes later."""
    assert decision.next_check_at is not None
    assert now + timedelta(minutes=1) <= decision.next_check_at <= now + timedelta(minutes=15)


# -- direct proof at the site ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row_state", "arm_overrides", "scope"),
    [
        pytest.param(PENDING, None, None, id="manifest-at-the-site-is-proof-without-asking-arm"),
        pytest.param(PENDING, {"last_sync": at(25, 2, 31)}, sync_scope(), id="manifest-at-the-site-beats-inference"),
        pytest.param(WAITING, {"connection": OFFLINE}, None, id="manifest-at-the-site-wins-over-arm-offline"),
        pytest.param(PENDING, {"connection": UNHEALTHY}, None, id="manifest-at-the-site-wins-over-arm-unhealthy"),
        pytest.param(
            PENDING,
            {},
            sync_scope(passwords=(TokenPassword("password1", at(20, 0)),)),
            id="manifest-at-the-site-wins-over-an-expired-token",
        ),
        pytest.param(PENDING, {}, sync_scope(enabled=False), id="manifest-at-the-site-wins-over-a-disabled-token"),
        pytest.param(PENDING, {"active": False}, None, id="manifest-at-the-site-wins-over-an-inactive-registry"),
        pytest.param(STALE, {}, None, id="manifest-at-the-site-ends-a-stale-row"),
        pytest.param(SYNCED, {}, None, id="manifest-at-the-site-turns-an-inferred-sync-into-proof"),
    ],
)
def test_manifest_at_the_site_verifies_the_release(
    row_state: SyncState, arm_overrides: dict[str, Any] | None, scope: SyncScope | None
) -> None:
    site, row, now = plant(), release_row(row_state), IN_WINDOW
    arm = None if arm_overrides is None else arm_state(site, now, **arm_overrides)

    decision = check(row, site, now, arm=arm, scope=scope, probe=manifest_present(row, now))

    assert (decision.state, decision.reason, decision.source) == (
        SyncState.VERIFIED,
        SyncReason.MANIFEST_PRESENT,
        EvidenceSource.OCI_PROBE,
    )
    assert decision.observed_digest == row.digest
    assert decision.details["Docker-Content-Digest"] == row.digest
    assert decision.details["endpoint"] == ENDPOINT
    assert decision.details["status"] == "200"
    assert decision.next_check_at is None  # proof is final: nothing left to check


def test_manifest_missing_at_the_site_refutes_arm_inference() -> None:
    site, row, now = plant(), release_row(), IN_WINDOW
    arm = arm_state(site, now, last_sync=at(25, 2, 31))

    decision = check(row, site, now, arm=arm, scope=sync_scope(), probe=manifest_absent(now))

    assert decision.state not in READY_STATES
    assert decision.next_check_at is not None


# -- ARM's inference: the site synced after the push ----------------------------------------------


@pytest.mark.parametrize(
    ("now", "arm_overrides"),
    [
        pytest.param(IN_WINDOW, {"last_sync": at(25, 2, 31)}, id="online-and-synced-after-the-push"),
        pytest.param(
            IN_WINDOW, {"connection": SYNCING, "last_sync": at(25, 2, 31)}, id="syncing-and-synced-after-push"
        ),
        pytest.param(
            at(25, 9),
            {"connection": OFFLINE, "last_sync": at(25, 4, 58), "last_activity": at(25, 4, 59)},
            id="offline-after-its-window-but-synced-in-it",
        ),
        pytest.param(IN_WINDOW, {"last_sync": PUSHED}, id="synced-at-the-instant-of-the-push-counts"),
    ],
)
def test_a_sync_after_the_push_means_synced(now: datetime, arm_overrides: dict[str, Any]) -> None:
    site, row = plant(endpoint=None), release_row()
    arm = arm_state(site, now, **arm_overrides)

    decision = check(row, site, now, arm=arm, scope=sync_scope())

    assert (decision.state, decision.reason, decision.source) == (
        SYNCED,
        SyncReason.SYNCED_AFTER_PUSH,
        EvidenceSource.ARM_LAST_SYNC,
    )
    assert decision.details["lastSyncTime"] == arm_overrides["last_sync"].isoformat()
    assert decision.details["connectionState"] == arm.connection_state.value
    assert decision.details["syncToken"] == "enabled"


@pytest.mark.parametrize(
    ("now", "arm_overrides", "expected_state", "expected_reason"),
    [
        pytest.param(
            IN_WINDOW, {"last_sync": BEFORE_PUSH}, PENDING, SyncReason.SYNC_IN_PROGRESS, id="last-sync-before-the-push"
        ),
        pytest.param(
            at(24, 9),
            {"connection": OFFLINE, "last_sync": BEFORE_PUSH, "last_activity": at(24, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            id="last-sync-before-the-push-and-window-closed",
        ),
        pytest.param(IN_WINDOW, {"last_sync": None}, PENDING, SyncReason.SYNC_IN_PROGRESS, id="never-synced-yet"),
        pytest.param(
            IN_WINDOW,
            {"connection": UNHEALTHY, "last_sync": at(25, 2, 31)},
            PENDING,
            SyncReason.SITE_UNHEALTHY,
            id="unhealthy-site-is-not-trusted-even-with-a-later-sync",
        ),
    ],
)
def test_no_sync_after_the_push_is_not_synced(
    now: datetime, arm_overrides: dict[str, Any], expected_state: SyncState, expected_reason: SyncReason
) -> None:
    site, row = plant(), release_row()

    decision = check(row, site, now, arm=arm_state(site, now, **arm_overrides), scope=sync_scope())

    assert (decision.state, decision.reason, decision.source) == (
        expected_state,
        expected_reason,
        EvidenceSource.SCHEDULE,
    )
    assert decision.next_check_at is not None


# -- a synced (inferred) row is re-checked for proof where a probe can give it ---------------------


@pytest.mark.parametrize(
    ("row_state", "checks", "endpoint", "now", "expected_next"),
    [
        pytest.param(PENDING, 0, ENDPOINT, IN_WINDOW, at(25, 2, 55), id="newly-synced-is-probed-again-in-the-window"),
        pytest.param(SYNCED, 1, ENDPOINT, at(25, 9), at(26, 2, 5), id="synced-is-probed-again-in-the-next-window"),
        pytest.param(SYNCED, 2, ENDPOINT, IN_WINDOW, None, id="no-probe-after-the-verify-cycles"),
        pytest.param(SYNCED, 9, ENDPOINT, IN_WINDOW, None, id="no-probe-long-after-the-verify-cycles"),
        pytest.param(PENDING, 0, None, IN_WINDOW, None, id="newly-synced-without-endpoint-has-nothing-to-probe"),
        pytest.param(SYNCED, 1, None, at(25, 9), None, id="synced-without-endpoint-has-nothing-to-probe"),
    ],
)
def test_synced_rows_are_rechecked_only_for_proof(
    row_state: SyncState, checks: int, endpoint: str | None, now: datetime, expected_next: datetime | None
) -> None:
    # rows checked twice or more in these cases synced more than VERIFY_CYCLES daily cycles ago
    synced_at = now - (VERIFY_CYCLES + checks) * timedelta(days=1) if checks >= 2 else None
    site, row = plant(endpoint=endpoint), release_row(row_state, checks=checks, synced_at=synced_at)
    arm = arm_state(site, now, connection=ONLINE if now == IN_WINDOW else OFFLINE, last_sync=at(25, 2, 31))
    probe_error = "unreachable" if endpoint and now != IN_WINDOW else None

    decision = check(row, site, now, arm=arm, scope=sync_scope(), probe_error=probe_error)

    assert (decision.state, decision.reason) == (SYNCED, SyncReason.SYNCED_AFTER_PUSH)
    assert decision.next_check_at == expected_next


def test_a_row_synced_after_several_waiting_checks_is_still_probed_for_proof() -> None:
    # checks so far: on the push, at 02:05, 02:20 and 02:35 — the sync lands at 02:31, seen at 02:40
    site, row = plant(), release_row(WAITING, checks=4)
    arm = arm_state(site, IN_WINDOW, last_sync=at(25, 2, 31))

    decision = check(row, site, IN_WINDOW, arm=arm, scope=sync_scope(), probe_error="unreachable")

    assert decision.state is SYNCED
    assert decision.next_check_at == at(25, 2, 55)


# -- permanent blockers: the digest cannot get there without someone acting --------------------------

_EXPIRED = TokenPassword("password1", at(20, 0))
_EXPIRED_YESTERDAY = TokenPassword("password2", at(24, 12))
_EXPIRES_NEXT_YEAR = TokenPassword("password2", datetime(2027, 11, 24, tzinfo=UTC))


@pytest.mark.parametrize(
    ("scope", "arm_overrides", "expected_reason"),
    [
        pytest.param(sync_scope(enabled=False), {}, SyncReason.SYNC_TOKEN_EXPIRED, id="sync-token-disabled"),
        pytest.param(
            sync_scope(passwords=(_EXPIRED, _EXPIRED_YESTERDAY)),
            {},
            SyncReason.SYNC_TOKEN_EXPIRED,
            id="every-token-password-expired",
        ),
        pytest.param(
            sync_scope(passwords=(TokenPassword("password1", IN_WINDOW),)),
            {},
            SyncReason.SYNC_TOKEN_EXPIRED,
            id="password-expiring-at-the-check-counts-as-expired",
        ),
        pytest.param(
            sync_scope("inspection/lidar", "quality/dashboard"),
            {},
            SyncReason.REPO_NOT_IN_SCOPE,
            id="repository-missing-from-exact-scope-map",
        ),
        pytest.param(
            sync_scope("quality/*", "inspection-legacy/*"),
            {},
            SyncReason.REPO_NOT_IN_SCOPE,
            id="repository-missing-from-wildcard-scope-map",
        ),
        pytest.param(
            sync_scope("quality/*"),
            {"last_sync": at(25, 2, 31)},
            SyncReason.REPO_NOT_IN_SCOPE,
            id="a-sync-after-the-push-says-nothing-for-a-repository-out-of-scope",
        ),
        pytest.param(sync_scope(), {"active": False}, SyncReason.SITE_INACTIVE, id="connected-registry-inactive"),
    ],
)
def test_permanent_blockers_fail_the_row(
    scope: SyncScope, arm_overrides: dict[str, Any], expected_reason: SyncReason
) -> None:
    site, row, now = plant(), release_row(), IN_WINDOW

    decision = check(row, site, now, arm=arm_state(site, now, **arm_overrides), scope=scope)

    assert (decision.state, decision.reason, decision.source) == (
        FAILED,
        expected_reason,
        EvidenceSource.ARM_LAST_SYNC,
    )
    assert decision.next_check_at is None  # waiting cannot help: someone has to act
    assert decision.expected_ready_at is None


@pytest.mark.parametrize("row_state", [WAITING, STALE])
def test_blockers_fail_rows_that_were_waiting_or_stale(row_state: SyncState) -> None:
    site, row, now = plant(), release_row(row_state), at(26, 9)

    decision = check(row, site, now, arm=arm_state(site, now), scope=sync_scope(enabled=False))

    assert (decision.state, decision.reason) == (FAILED, SyncReason.SYNC_TOKEN_EXPIRED)


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param(sync_scope(passwords=(_EXPIRED, TokenPassword("password2", None))), id="password-without-expiry"),
        pytest.param(sync_scope(passwords=(_EXPIRED, _EXPIRES_NEXT_YEAR)), id="one-password-still-valid"),
        pytest.param(sync_scope(passwords=()), id="no-passwords-listed"),
        pytest.param(sync_scope("inspection/camera"), id="exact-repository-in-scope-map"),
        pytest.param(sync_scope("quality/*", "inspection/*"), id="repository-under-a-wildcard"),
        pytest.param(sync_scope("*"), id="scope-map-reads-everything"),
    ],
)
def test_a_valid_token_and_covering_scope_block_nothing(scope: SyncScope) -> None:
    site, row, now = plant(), release_row(), IN_WINDOW

    decision = check(row, site, now, arm=arm_state(site, now, last_sync=at(25, 2, 31)), scope=scope)

    assert (decision.state, decision.reason) == (SYNCED, SyncReason.SYNCED_AFTER_PUSH)


def test_a_token_expiring_after_the_site_synced_does_not_undo_the_sync() -> None:
    site, row, now = plant(), release_row(), at(25, 9)
    arm = arm_state(site, now, connection=OFFLINE, last_sync=at(25, 2, 31), last_activity=at(25, 4, 59))
    scope = sync_scope(passwords=(TokenPassword("password1", at(25, 6)),))

    decision = check(row, site, now, arm=arm, scope=scope)

    assert (decision.state, decision.reason) == (SYNCED, SyncReason.SYNCED_AFTER_PUSH)


# -- window arithmetic: waiting is expected, not late --------------------------------------------------


@pytest.mark.parametrize(
    ("row_state", "now", "arm_overrides", "expected_state", "expected_reason", "ready_at", "next_check"),
    [
        pytest.param(
            PENDING,
            at(24, 9),
            {"connection": OFFLINE, "last_activity": at(24, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            at(25, 5),
            at(25, 2, 5),
            id="window-closed-waits-for-the-next-one-plus-margin",
        ),
        pytest.param(
            WAITING,
            at(25, 1, 59),
            {"connection": OFFLINE, "last_activity": at(24, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            at(25, 5),
            at(25, 2, 5),
            id="a-minute-before-opening-still-waits",
        ),
        pytest.param(
            PENDING,
            at(24, 9),
            {"connection": UNHEALTHY, "last_activity": at(24, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            at(25, 5),
            at(25, 2, 5),
            id="window-closed-is-expected-offline-whatever-arm-says",
        ),
        pytest.param(
            PENDING,
            at(25, 2),
            {},
            PENDING,
            SyncReason.SYNC_IN_PROGRESS,
            at(25, 5),
            at(25, 2, 15),
            id="window-opening-now-is-open",
        ),
        pytest.param(
            WAITING,
            at(25, 2, 5),
            {},
            WAITING,
            SyncReason.SYNC_IN_PROGRESS,
            at(25, 5),
            at(25, 2, 20),
            id="window-open-digest-missing-is-in-progress",
        ),
        pytest.param(
            WAITING,
            IN_WINDOW,
            {"connection": SYNCING},
            WAITING,
            SyncReason.SYNC_IN_PROGRESS,
            at(25, 5),
            at(25, 2, 55),
            id="window-open-and-syncing-is-in-progress",
        ),
        pytest.param(
            WAITING,
            IN_WINDOW,
            {"connection": OFFLINE, "last_activity": at(24, 4, 59)},
            WAITING,
            SyncReason.SITE_OFFLINE,
            None,  # offline in its window: nothing says when it is back, so no estimate (never the close)
            at(25, 2, 55),
            id="window-open-but-site-offline",
        ),
        pytest.param(
            WAITING,
            IN_WINDOW,
            {"connection": UNHEALTHY},
            WAITING,
            SyncReason.SITE_UNHEALTHY,
            at(25, 5),
            at(25, 2, 55),
            id="window-open-but-site-unhealthy",
        ),
        pytest.param(
            WAITING,
            at(25, 5),
            {"connection": OFFLINE, "last_activity": at(25, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            at(26, 5),
            at(26, 2, 5),
            id="window-closes-at-its-end-one-missed-window-is-not-late",
        ),
    ],
)
def test_window_arithmetic(
    row_state: SyncState,
    now: datetime,
    arm_overrides: dict[str, Any],
    expected_state: SyncState,
    expected_reason: SyncReason,
    ready_at: datetime | None,
    next_check: datetime,
) -> None:
    site, row = plant(), release_row(row_state)

    decision = check(row, site, now, arm=arm_state(site, now, **arm_overrides), scope=sync_scope())

    assert (decision.state, decision.reason, decision.source) == (
        expected_state,
        expected_reason,
        EvidenceSource.SCHEDULE,
    )
    assert decision.expected_ready_at == ready_at
    assert decision.next_check_at == next_check


@pytest.mark.parametrize("now", [at(25, 2), at(25, 2, 5), IN_WINDOW, at(25, 4), at(25, 4, 44)])
def test_inside_the_window_the_next_look_is_soon_and_inside_it(now: datetime) -> None:
    site, row = plant(), release_row(WAITING)

    decision = check(row, site, now, arm=arm_state(site, now), scope=sync_scope())

    assert decision.reason is SyncReason.SYNC_IN_PROGRESS
    assert_waits(decision, now)
    assert decision.next_check_at is not None and decision.next_check_at < at(25, 5)


@pytest.mark.parametrize(
    ("sync_window", "now", "expected_next"),
    [
        pytest.param(timedelta(hours=1), at(24, 8, 40), at(24, 9, 5), id="hour-window-margin-is-five-minutes"),
        pytest.param(timedelta(minutes=12), at(24, 8, 40), at(24, 9, 3), id="short-window-margin-is-a-quarter"),
        pytest.param(timedelta(minutes=12), at(24, 9, 5), at(24, 9, 8), id="short-window-rechecks-each-quarter"),
        pytest.param(timedelta(minutes=2), at(24, 9), at(24, 9, 1), id="tiny-window-rechecks-after-a-minute"),
    ],
)
def test_margins_scale_with_short_simulated_windows(
    sync_window: timedelta, now: datetime, expected_next: datetime
) -> None:
    site, row = plant(schedule="0 9 * * *", sync_window=sync_window, connected_registry=None), release_row()

    decision = check(row, site, now)

    assert decision.next_check_at == expected_next


# -- ARM's schedule is the truth; the site's configuration is a fallback -------------------------------


@pytest.mark.parametrize(
    ("now", "arm_sync", "expected_reason", "ready_at", "next_check"),
    [
        pytest.param(
            at(24, 9),
            {"schedule": "0 20 * * *", "sync_window": timedelta(hours=2)},
            SyncReason.WINDOW_CLOSED,
            at(24, 22),
            at(24, 20, 5),
            id="arm-schedule-sets-the-next-window",
        ),
        pytest.param(
            at(24, 21),
            {"schedule": "0 20 * * *", "sync_window": timedelta(hours=2)},
            SyncReason.SYNC_IN_PROGRESS,
            at(24, 22),
            at(24, 21, 15),
            id="arm-window-open-although-configured-one-is-closed",
        ),
        pytest.param(
            at(24, 9),
            {"schedule": CONTINUOUS_SCHEDULE, "sync_window": None},
            SyncReason.SYNC_IN_PROGRESS,
            at(24, 9, 1),
            at(24, 9, 1),
            id="arm-continuous-sync-overrides-a-configured-window",
        ),
    ],
)
def test_arm_schedule_takes_precedence_over_the_configured_one(
    now: datetime, arm_sync: dict[str, Any], expected_reason: SyncReason, ready_at: datetime, next_check: datetime
) -> None:
    site, row = plant(), release_row()

    decision = check(row, site, now, arm=arm_state(site, now, **arm_sync), scope=sync_scope())

    assert decision.reason is expected_reason
    assert decision.expected_ready_at == ready_at
    assert decision.next_check_at == next_check


def test_arm_message_ttl_takes_precedence_over_the_configured_one() -> None:
    site, row, now = plant(message_ttl=timedelta(days=7)), release_row(), at(25, 9)
    arm = arm_state(site, now, connection=OFFLINE, last_activity=at(25, 4, 59), message_ttl=timedelta(days=1))

    decision = check(row, site, now, arm=arm, scope=sync_scope())

    assert (decision.state, decision.reason) == (STALE, SyncReason.MESSAGE_TTL_EXPIRED)


# -- stale: late, silent or past the TTL, each told apart from expected-offline ------------------------


@pytest.mark.parametrize(
    ("site_settings", "now", "arm_overrides", "expected_reason", "ready_at", "next_check"),
    [
        pytest.param(
            {},
            at(26, 5),
            {"last_activity": at(26, 4, 59)},
            SyncReason.WINDOW_MISSED,
            at(27, 5),
            at(27, 2, 5),
            id="late-as-the-second-window-closes",
        ),
        pytest.param(
            {},
            at(26, 5, 30),
            {"connection": OFFLINE, "last_activity": at(26, 4, 59)},
            SyncReason.WINDOW_MISSED,
            at(27, 5),
            at(27, 2, 5),
            id="late-after-two-closed-windows",
        ),
        pytest.param(
            {"stale_after_windows": 3, "message_ttl": timedelta(days=7)},
            at(27, 5, 30),
            {"connection": OFFLINE, "last_activity": at(27, 4, 59)},
            SyncReason.WINDOW_MISSED,
            at(28, 5),
            at(28, 2, 5),
            id="late-after-three-windows-when-the-policy-says-three",
        ),
        pytest.param(
            {},
            at(26, 3),
            {"connection": OFFLINE, "last_activity": at(24, 2, 30)},
            SyncReason.SITE_SILENT,
            None,  # offline inside its window: no estimate
            at(26, 3, 15),
            id="silent-for-two-cycles",
        ),
        pytest.param(
            {},
            at(24, 9),
            {"connection": OFFLINE, "last_activity": at(22, 4, 59)},
            SyncReason.SITE_SILENT,
            at(25, 5),
            at(25, 2, 5),
            id="silent-site-is-stale-even-for-a-fresh-release",
        ),
        pytest.param(
            {"stale_after_windows": 3, "message_ttl": timedelta(days=7)},
            at(27, 3),
            {"connection": OFFLINE, "last_activity": at(24, 2, 30)},
            SyncReason.SITE_SILENT,
            None,
            at(27, 3, 15),
            id="silent-for-three-cycles-when-the-policy-says-three",
        ),
        pytest.param(
            {"message_ttl": timedelta(days=1)},
            at(25, 9),
            {"connection": OFFLINE, "last_activity": at(25, 4, 59)},
            SyncReason.MESSAGE_TTL_EXPIRED,
            at(26, 5),
            at(26, 2, 5),
            id="past-the-message-ttl",
        ),
        pytest.param(
            {},
            at(26, 8, 30),
            {"connection": OFFLINE, "last_activity": at(26, 4, 59)},
            SyncReason.MESSAGE_TTL_EXPIRED,
            at(27, 5),
            at(27, 2, 5),
            id="past-the-default-two-day-ttl-the-message-is-gone",
        ),
    ],
)
def test_stale_is_late_silent_or_expired(
    site_settings: dict[str, Any],
    now: datetime,
    arm_overrides: dict[str, Any],
    expected_reason: SyncReason,
    ready_at: datetime | None,
    next_check: datetime,
) -> None:
    site, row = plant(**site_settings), release_row(WAITING)

    decision = check(row, site, now, arm=arm_state(site, now, **arm_overrides), scope=sync_scope())

    assert (decision.state, decision.reason, decision.source) == (STALE, expected_reason, EvidenceSource.SCHEDULE)
    assert decision.expected_ready_at == ready_at
    assert decision.next_check_at == next_check


@pytest.mark.parametrize(
    ("site_settings", "now", "arm_overrides", "expected_state", "expected_reason"),
    [
        pytest.param(
            {},
            at(25, 9),
            {"connection": OFFLINE, "last_activity": at(25, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            id="one-window-missed-is-expected-offline",
        ),
        pytest.param(
            {},
            at(26, 4, 59),
            {"last_activity": at(26, 4, 58)},
            WAITING,
            SyncReason.SYNC_IN_PROGRESS,
            id="second-window-still-open-is-not-late",
        ),
        pytest.param(
            {"stale_after_windows": 3, "message_ttl": timedelta(days=7)},
            at(26, 5, 30),
            {"connection": OFFLINE, "last_activity": at(26, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            id="two-windows-missed-is-not-late-when-the-policy-says-three",
        ),
        pytest.param(
            {},
            at(26, 3),
            {"connection": OFFLINE, "last_activity": at(24, 4, 59)},
            WAITING,
            SyncReason.SITE_OFFLINE,
            id="quiet-for-less-than-two-cycles-is-not-silent",
        ),
        pytest.param(
            {"message_ttl": timedelta(days=1)},
            at(25, 8, 29),
            {"connection": OFFLINE, "last_activity": at(25, 4, 59)},
            WAITING,
            SyncReason.WINDOW_CLOSED,
            id="a-minute-before-the-ttl-is-not-expired",
        ),
    ],
)
def test_expected_offline_is_not_stale(
    site_settings: dict[str, Any],
    now: datetime,
    arm_overrides: dict[str, Any],
    expected_state: SyncState,
    expected_reason: SyncReason,
) -> None:
    site, row = plant(**site_settings), release_row(WAITING)

    decision = check(row, site, now, arm=arm_state(site, now, **arm_overrides), scope=sync_scope())

    assert (decision.state, decision.reason) == (expected_state, expected_reason)
    assert decision.next_check_at is not None


# -- continuous sync: lateness counted in 30-minute cycles ---------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "stale_after", "minutes", "expected_state", "expected_reason"),
    [
        pytest.param(None, 2, 0, PENDING, SyncReason.SYNC_IN_PROGRESS, id="just-pushed-is-in-progress"),
        pytest.param(None, 2, 59, PENDING, SyncReason.SYNC_IN_PROGRESS, id="59-minutes-is-not-late"),
        pytest.param(None, 2, 60, STALE, SyncReason.WINDOW_MISSED, id="an-hour-is-two-cycles"),
        pytest.param(None, 2, 61, STALE, SyncReason.WINDOW_MISSED, id="61-minutes-is-late"),
        pytest.param(CONTINUOUS_SCHEDULE, 2, 61, STALE, SyncReason.WINDOW_MISSED, id="every-minute-cron-is-continuous"),
        pytest.param(None, 1, 29, PENDING, SyncReason.SYNC_IN_PROGRESS, id="one-cycle-policy-29-minutes-not-late"),
        pytest.param(None, 1, 31, STALE, SyncReason.WINDOW_MISSED, id="one-cycle-policy-31-minutes-late"),
        pytest.param(None, 3, 89, PENDING, SyncReason.SYNC_IN_PROGRESS, id="three-cycle-policy-89-minutes-not-late"),
        pytest.param(None, 3, 91, STALE, SyncReason.WINDOW_MISSED, id="three-cycle-policy-91-minutes-late"),
    ],
)
def test_continuous_sync_counts_lateness_in_cycles(
    schedule: str | None,
    stale_after: int,
    minutes: int,
    expected_state: SyncState,
    expected_reason: SyncReason,
) -> None:
    assert timedelta(minutes=30) == CONTINUOUS_STALE_CYCLE
    site = plant(schedule=schedule, sync_window=None, stale_after_windows=stale_after)
    row, now = release_row(pushed_at=T0), T0 + timedelta(minutes=minutes)
    arm = arm_state(site, now, last_sync=T0 - timedelta(minutes=3), last_activity=now - timedelta(seconds=20))

    decision = check(row, site, now, arm=arm, scope=sync_scope(), probe=manifest_absent(now))

    assert (decision.state, decision.reason) == (expected_state, expected_reason)
    assert decision.next_check_at == now + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("quiet_for", "expected_state"),
    [
        pytest.param(timedelta(minutes=59), PENDING, id="quiet-for-59-minutes-is-not-silent"),
        pytest.param(timedelta(minutes=61), STALE, id="quiet-for-two-cycles-is-silent"),
    ],
)
def test_continuous_site_silent_for_two_cycles(quiet_for: timedelta, expected_state: SyncState) -> None:
    site = plant(schedule=None, sync_window=None)
    row, now = release_row(pushed_at=T0), T0 + timedelta(minutes=20)
    arm = arm_state(site, now, connection=OFFLINE, last_sync=now - quiet_for, last_activity=now - quiet_for)

    decision = check(row, site, now, arm=arm, scope=sync_scope())

    assert decision.state is expected_state
    assert decision.reason is (SyncReason.SITE_SILENT if expected_state is STALE else SyncReason.SITE_OFFLINE)


@pytest.mark.parametrize(
    ("site_settings", "minutes", "expected_state"),
    [
        pytest.param({"schedule": None, "sync_window": None}, 20, PENDING, id="continuous-offline-pending"),
        pytest.param({"schedule": None, "sync_window": None, "stale_after_windows": 1}, 40, STALE, id="offline-stale"),
    ],
)
def test_an_offline_site_has_no_estimate_only_since_when(
    site_settings: dict[str, Any], minutes: int, expected_state: SyncState
) -> None:
    site = plant(**site_settings)
    row, now = release_row(pushed_at=T0), T0 + timedelta(minutes=minutes)
    last_heard = T0 - timedelta(minutes=5)
    offline = arm_state(site, now, connection=OFFLINE, last_sync=T0 - timedelta(hours=1), last_activity=last_heard)

    decision = check(row, site, now, arm=offline, scope=sync_scope())

    assert decision.state is expected_state
    assert (decision.expected_ready_at, decision.offline_since) == (None, last_heard)
    moved = apply_decision(row, decision, now).row
    assert (moved.expected_ready_at, moved.offline_since) == (None, last_heard)

    back = arm_state(site, now, last_sync=T0 - timedelta(hours=1), last_activity=now)
    again = apply_decision(moved, check(moved, site, now, arm=back, scope=sync_scope()), now).row
    assert again.offline_since is None  # online again: the estimate comes back with it


# -- no flapping: stale stays stale until the digest arrives --------------------------------------------


@pytest.mark.parametrize(
    ("row_reason", "now", "arm_overrides", "expected_reason", "next_check"),
    [
        pytest.param(
            SyncReason.WINDOW_MISSED,
            at(26, 8),
            {"connection": OFFLINE, "last_activity": at(26, 4, 59)},
            SyncReason.WINDOW_MISSED,
            at(27, 2, 5),
            id="late-row-still-late-outside-the-window",
        ),
        pytest.param(
            SyncReason.WINDOW_MISSED,
            at(27, 2, 40),
            {},
            SyncReason.MESSAGE_TTL_EXPIRED,
            at(27, 2, 55),
            id="late-row-in-a-later-window-stays-stale",
        ),
        pytest.param(
            SyncReason.SITE_SILENT,
            IN_WINDOW,
            {},
            SyncReason.SYNC_IN_PROGRESS,
            at(25, 2, 55),
            id="silent-site-back-online-but-digest-missing-stays-stale",
        ),
        pytest.param(
            SyncReason.SITE_SILENT,
            at(25, 9),
            {"connection": OFFLINE, "last_activity": at(25, 4, 59)},
            SyncReason.WINDOW_CLOSED,
            at(26, 2, 5),
            id="silent-site-back-then-window-closed-stays-stale",
        ),
    ],
)
def test_a_stale_row_with_the_digest_missing_stays_stale(
    row_reason: SyncReason,
    now: datetime,
    arm_overrides: dict[str, Any],
    expected_reason: SyncReason,
    next_check: datetime,
) -> None:
    site, row = plant(), release_row(STALE, reason=row_reason)
    arm = arm_state(site, now, **arm_overrides)

    decision = check(row, site, now, arm=arm, scope=sync_scope(), probe=manifest_absent(now))

    assert decision.state is STALE  # never back to WAITING_FOR_WINDOW
    assert decision.reason is expected_reason
    assert decision.next_check_at == next_check


@pytest.mark.parametrize(
    "now",
    [pytest.param(at(26, 2, 40), id="in-its-window"), pytest.param(at(26, 9), id="after-its-window")],
)
def test_a_stale_site_that_catches_up_is_synced(now: datetime) -> None:
    site, row = plant(endpoint=None), release_row(STALE)
    connection = ONLINE if now.hour < 5 else OFFLINE
    arm = arm_state(site, now, connection=connection, last_sync=at(26, 2, 31), last_activity=at(26, 2, 31))

    decision = check(row, site, now, arm=arm, scope=sync_scope())

    assert (decision.state, decision.reason, decision.source) == (
        SYNCED,
        SyncReason.SYNCED_AFTER_PUSH,
        EvidenceSource.ARM_LAST_SYNC,
    )


# -- no ARM and no probe: only the window rules apply ----------------------------------------------------


@pytest.mark.parametrize(
    ("site_settings", "row_state", "now", "expected_state", "expected_reason", "next_check"),
    [
        pytest.param(
            {}, PENDING, at(24, 9), WAITING, SyncReason.WINDOW_CLOSED, at(25, 2, 5), id="outside-the-window-waits"
        ),
        pytest.param(
            {},
            WAITING,
            IN_WINDOW,
            WAITING,
            SyncReason.SYNC_IN_PROGRESS,
            at(25, 2, 55),
            id="inside-the-window-in-progress-not-offline",
        ),
        pytest.param(
            {}, WAITING, at(26, 5, 30), STALE, SyncReason.WINDOW_MISSED, at(27, 2, 5), id="two-windows-missed-is-late"
        ),
        pytest.param(
            {"message_ttl": timedelta(days=1)},
            WAITING,
            at(25, 9),
            STALE,
            SyncReason.MESSAGE_TTL_EXPIRED,
            at(26, 2, 5),
            id="past-the-configured-ttl",
        ),
        pytest.param(
            {"schedule": None, "sync_window": None},
            PENDING,
            at(24, 9),
            PENDING,
            SyncReason.SYNC_IN_PROGRESS,
            at(24, 9, 1),
            id="continuous-site-in-progress",
        ),
    ],
)
def test_without_arm_or_probe_only_windows_decide(
    site_settings: dict[str, Any],
    row_state: SyncState,
    now: datetime,
    expected_state: SyncState,
    expected_reason: SyncReason,
    next_check: datetime,
) -> None:
    site, row = plant(connected_registry=None, endpoint=None, **site_settings), release_row(row_state)

    decision = check(row, site, now)

    assert (decision.state, decision.reason, decision.source) == (
        expected_state,
        expected_reason,
        EvidenceSource.SCHEDULE,
    )
    assert decision.next_check_at == next_check


@pytest.mark.parametrize(
    ("site_settings", "probe_error"),
    [
        pytest.param({"endpoint": None}, None, id="no-connected-registry-no-endpoint"),
        pytest.param({}, "unreachable", id="no-connected-registry-endpoint-unreachable"),
        pytest.param({"schedule": None, "sync_window": None, "endpoint": None}, None, id="continuous-site-unobserved"),
    ],
)
def test_without_arm_or_probe_a_row_is_never_synced(site_settings: dict[str, Any], probe_error: str | None) -> None:
    """Follow one row through three days of checks: it waits, goes stale, but nothing can say it arrived."""
    site = plant(connected_registry=None, **site_settings)
    row, now = release_row(), PUSHED
    while now < PUSHED + timedelta(days=3):
        decision = check(row, site, now, probe_error=probe_error)
        assert decision.state not in READY_STATES
        assert decision.next_check_at is not None
        row = replace(row, state=decision.state, reason=decision.reason, checks=row.checks + 1)
        now = decision.next_check_at
    assert row.state is STALE


# -- the evidence carries what the decision relied on ---------------------------------------------------


def test_evidence_details_carry_arm_token_and_probe_observations() -> None:
    site, row, now = plant(), release_row(), IN_WINDOW
    arm = arm_state(site, now, last_activity=at(25, 2, 39))

    decision = check(row, site, now, arm=arm, scope=sync_scope(), probe_error="unreachable")

    assert decision.details == {
        "connectionState": "Online",
        "activation": "Active",
        "lastSyncTime": BEFORE_PUSH.isoformat(),
        "lastActivityTime": at(25, 2, 39).isoformat(),
        "schedule": DAILY,
        "syncToken": "enabled",
        "probeError": "unreachable",
    }
