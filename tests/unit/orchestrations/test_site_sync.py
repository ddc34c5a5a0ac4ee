"""The Service Bus and timer triggers, called with the objects the Functions worker builds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from orchestrations.site_sync import site_sync, site_sync_dead_letter
from orchestrations.sweeper import sweeper
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.model import Site
from shared.domain.states import SyncReason, SyncState
from shared.errors import InvalidInput
from shared.services.ingest import ingest_delivery
from tests.fakes import CountingSink, FakeClock, delivery, load_event

NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    store = SqliteStateStore(tmp_path / "s.db")
    clock = FakeClock(NOW)
    store.upsert_sites([Site(name="plant-03", repositories=("inspection/*",))])  # no ARM, no endpoint: windows only
    wired = bootstrap(
        Settings(data_dir=tmp_path),
        store=store,
        queue=SqliteJobQueue(tmp_path / "s.db", clock=clock.now),
        clock=clock,
        events=CountingSink(),
    )
    ingest_delivery(wired, delivery(load_event("eventgrid-image-pushed")), "application/json")
    use_services(wired)
    yield wired
    use_services(None)
    wired.close()


def message(body: bytes, *, message_id: str = "m-1", reason: str | None = None) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=body,
        application_properties={},
        user_properties={},
        message_id=message_id,
        session_id="plant-03",
        delivery_count=1,
        dead_letter_reason=reason,
        dead_letter_error_description="too many deliveries" if reason else None,
    )


def the_row(services: Services) -> object:
    [row] = services.store.list_site_syncs(services.store.list_releases().items[0].release_id)
    return row.value


def test_a_job_message_runs_the_site_check(services: Services) -> None:
    release_id = services.store.list_releases().items[0].release_id
    site_sync(message(json.dumps({"release_id": release_id, "site": "plant-03"}).encode()))
    row = the_row(services)
    assert row.checks == 1 and row.reason is SyncReason.SYNC_IN_PROGRESS  # type: ignore[attr-defined]


def test_a_malformed_message_raises_so_the_host_redelivers_and_dead_letters_it(services: Services) -> None:
    with pytest.raises(InvalidInput):
        site_sync(message(b'{"release_id": 42}'))
    assert the_row(services).checks == 0  # type: ignore[attr-defined]


def test_the_dead_letter_trigger_fails_the_row_with_the_queue_reason(services: Services) -> None:
    release_id = services.store.list_releases().items[0].release_id
    body = json.dumps({"release_id": release_id, "site": "plant-03"}).encode()
    site_sync_dead_letter(message(body, reason="MaxDeliveryCountExceeded"))
    row = the_row(services)
    assert (row.state, row.reason) == (SyncState.FAILED, SyncReason.MAX_DELIVERIES_EXCEEDED)  # type: ignore[attr-defined]


def test_the_timer_runs_a_sweep(services: Services) -> None:
    services.clock.advance(days=3)  # type: ignore[attr-defined]
    sweeper(TimerRequest(past_due=False))
    row = the_row(services)
    assert (row.state, row.reason) == (SyncState.STALE, SyncReason.MESSAGE_TTL_EXPIRED)  # type: ignore[attr-defined]
    assert row.stale_at == NOW + timedelta(days=3)  # type: ignore[attr-defined]
