from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.states import ALLOWED_TRANSITIONS, READY_STATES, TERMINAL_STATES, SyncReason, SyncState
from shared.errors import IllegalTransition
from tests.builders import T0, make_release, make_row


def test_every_state_has_a_transition_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(SyncState)


@pytest.mark.parametrize("terminal", [SyncState.VERIFIED, SyncState.WITHDRAWN])
def test_proof_and_withdrawal_are_final(terminal: SyncState) -> None:
    assert ALLOWED_TRANSITIONS[terminal] == frozenset()


def test_synced_only_improves_to_verified_so_status_never_flaps() -> None:
    assert ALLOWED_TRANSITIONS[SyncState.SYNCED] == {SyncState.VERIFIED}
    assert SyncState.WAITING_FOR_WINDOW not in ALLOWED_TRANSITIONS[SyncState.STALE]


def test_moving_a_row_stamps_the_matching_time() -> None:
    row = make_row(make_release(), "plant-01")
    synced = row.moved_to(SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, T0 + timedelta(hours=1))
    verified = synced.moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0 + timedelta(hours=2))
    assert synced.synced_at == T0 + timedelta(hours=1)
    assert verified.synced_at == T0 + timedelta(hours=1)
    assert verified.verified_at == T0 + timedelta(hours=2)
    stale = row.moved_to(SyncState.STALE, SyncReason.WINDOW_MISSED, T0 + timedelta(days=2))
    assert stale.stale_at == T0 + timedelta(days=2) and stale.reason is SyncReason.WINDOW_MISSED


def test_verified_directly_counts_as_synced_at_the_same_time() -> None:
    row = make_row(make_release(), "plant-01")
    verified = row.moved_to(SyncState.VERIFIED, SyncReason.EDGE_EVENT_RECEIVED, T0)
    assert verified.synced_at == verified.verified_at == T0


def test_illegal_transition_names_both_states() -> None:
    row = make_row(make_release(), "plant-01").moved_to(SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT, T0)
    with pytest.raises(IllegalTransition, match="from VERIFIED to STALE"):
        row.moved_to(SyncState.STALE, SyncReason.WINDOW_MISSED, T0)


def test_ready_and_terminal_sets() -> None:
    assert READY_STATES == {SyncState.SYNCED, SyncState.VERIFIED}
    assert SyncState.SYNCED not in TERMINAL_STATES  # a synced row can still be verified
    assert SyncState.STALE not in TERMINAL_STATES  # a stale row can still catch up
