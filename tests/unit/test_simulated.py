from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.model import Site
from shared.domain.observations import ConnectionState
from shared.errors import NotFound
from shared.local.simulated import SimulatedConnectedRegistries, simulated_resource_id
from tests.fakes import FakeClock

T = datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC)
SITES = [
    Site(name="plant-01", repositories=("inspection/*",)),
    Site(name="plant-02", repositories=("inspection/*",), schedule="*/2 * * * *", sync_window=timedelta(minutes=1)),
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T)


@pytest.fixture
def sim(clock: FakeClock) -> SimulatedConnectedRegistries:
    return SimulatedConnectedRegistries(lambda: SITES, clock.now)


def test_a_scheduled_site_syncs_at_its_window_openings(sim: SimulatedConnectedRegistries, clock: FakeClock) -> None:
    rid = simulated_resource_id("plant-02")
    assert sim.get_connected_registry(rid).last_sync_time == datetime(2026, 11, 27, 10, 0, 5, tzinfo=UTC)
    assert sim.get_connected_registry(rid).connection_state is ConnectionState.SYNCING
    clock.advance(minutes=1)  # 10:01:30, window closed
    assert sim.get_connected_registry(rid).connection_state is ConnectionState.ONLINE
    clock.advance(minutes=1)  # 10:02:30
    assert sim.get_connected_registry(rid).last_sync_time == datetime(2026, 11, 27, 10, 2, 5, tzinfo=UTC)


def test_an_offline_site_stops_syncing_until_it_is_back(sim: SimulatedConnectedRegistries, clock: FakeClock) -> None:
    rid = simulated_resource_id("plant-01")
    sim.set_online("plant-01", False)
    frozen = sim.get_connected_registry(rid)
    assert frozen.connection_state is ConnectionState.OFFLINE
    clock.advance(minutes=10)
    assert sim.get_connected_registry(rid).last_sync_time == frozen.last_sync_time
    assert sim.get_connected_registry(rid).last_activity_time == T
    sim.set_online("plant-01", True)
    assert sim.get_connected_registry(rid).last_sync_time == datetime(2026, 11, 27, 10, 10, 5, tzinfo=UTC)


def test_scope_is_the_sites_approved_repositories(sim: SimulatedConnectedRegistries) -> None:
    state = sim.get_connected_registry(simulated_resource_id("plant-01"))
    assert state.token_id is not None
    scope = sim.get_sync_scope(state.token_id)
    assert scope.covers("inspection/camera") and not scope.covers("retail/pos-api")


def test_unknown_sites_are_not_found(sim: SimulatedConnectedRegistries) -> None:
    with pytest.raises(NotFound):
        sim.get_connected_registry(simulated_resource_id("nowhere"))
    with pytest.raises(NotFound):
        sim.set_online("nowhere", False)
