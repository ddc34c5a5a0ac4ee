"""The Event Grid trigger and its webhook twin, driven with real azure.functions objects and HTTP."""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from fastapi.testclient import TestClient

from orchestrations.acr_events import on_acr_event
from orchestrations.api import create_app
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.model import Site
from tests.fakes import FakeClock, delivery, load_event

asgi_app = create_app()

URL = "/runtime/webhooks/eventgrid?functionName=on_acr_event"
NOW = datetime.datetime(2026, 11, 24, 9, 42, tzinfo=datetime.UTC)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    store, queue = SqliteStateStore(tmp_path / "s.db"), SqliteJobQueue(tmp_path / "s.db", clock=lambda: NOW)
    store.upsert_sites(
        [Site(name="plant-01", repositories=("inspection/*",)), Site(name="plant-02", repositories=("inspection/*",))]
    )
    wired = bootstrap(Settings(data_dir=tmp_path), store=store, queue=queue, clock=FakeClock(NOW))
    use_services(wired)
    yield wired
    use_services(None)
    wired.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(asgi_app)


def post(client: TestClient, body: bytes, content_type: str = "application/json", **headers: str) -> Any:
    return client.post(
        URL, content=body, headers={"content-type": content_type, "aeg-event-type": "Notification", **headers}
    )


def nothing_written(services: Services) -> bool:
    return services.store.list_releases().items == [] and services.queue.count() == 0  # type: ignore[attr-defined]


def test_event_grid_schema_delivery_creates_the_release(client: TestClient, services: Services) -> None:
    response = post(client, delivery(load_event("eventgrid-image-pushed")))
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["outcome"] == "release-created" and result["jobs_sent"] == 2
    assert len(services.store.list_releases().items) == 1


@pytest.mark.parametrize(
    "content_type", ["application/cloudevents+json; charset=utf-8", "application/cloudevents-batch+json; charset=utf-8"]
)
def test_cloudevents_single_and_batch(client: TestClient, services: Services, content_type: str) -> None:
    event = load_event("cloudevents-image-pushed")
    body = json.dumps(event if "batch" not in content_type else [event]).encode()
    assert post(client, body, content_type).json()["results"][0]["outcome"] == "release-created"


def test_subscription_validation_handshake(client: TestClient, services: Services) -> None:
    response = post(
        client,
        delivery(load_event("eventgrid-subscription-validation")),
        **{"aeg-event-type": "SubscriptionValidation"},
    )
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "4f1d2c3b-8e7a-4b6c-9d5e-0a1f2e3d4c5b"}
    assert nothing_written(services)


def test_cloudevents_abuse_protection_handshake(client: TestClient) -> None:
    response = client.options(URL, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert "POST" in response.headers["Allow"]
    assert client.options("/runtime/webhooks/EventGrid", headers={"WebHook-Request-Origin": "x"}).status_code == 200


def _without_digest() -> bytes:
    event = load_event("eventgrid-image-pushed")
    del event["data"]["target"]["digest"]
    return delivery(event)


def _with_target(**target: Any) -> bytes:
    event = load_event("eventgrid-image-pushed")
    event["data"]["target"].update(target)
    return delivery(event)


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"{not json", "application/json", "MALFORMED_JSON"),
        (_without_digest(), "application/json", "MISSING_FIELD"),
        (_with_target(digest="90fe64c3b638"), "application/json", "INVALID_DIGEST"),
        (_with_target(repository="Inspection//Camera"), "application/json", "INVALID_REPOSITORY"),
        (_with_target(tag="no spaces allowed"), "application/json", "INVALID_TAG"),
        (delivery(load_event("eventgrid-image-pushed")), "text/plain", "UNSUPPORTED_MEDIA_TYPE"),
        (b"[]", "application/json", "MALFORMED_EVENT"),
        (b"[1, 2]", "application/json", "MALFORMED_EVENT"),
        (json.dumps([load_event("eventgrid-image-pushed")] * 6000).encode(), "application/json", "BATCH_TOO_LARGE"),
    ],
)
def test_bad_deliveries_get_a_problem_and_change_nothing(
    client: TestClient, services: Services, body: bytes, content_type: str, code: str
) -> None:
    response = post(client, body, content_type)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code and response.headers["x-ms-error-code"] == code
    assert response.json()["detail"] and response.json()["status"] == 400
    assert nothing_written(services)


def test_one_bad_event_is_reported_and_the_good_one_taken(client: TestClient, services: Services) -> None:
    # As in Azure, where the host hands the trigger one event at a time and only the poison one is dropped.
    bad = load_event("cloudevents-image-pushed")
    bad["data"]["target"]["digest"] = "sha256:zz"
    response = post(client, json.dumps([load_event("eventgrid-image-pushed"), bad]).encode())
    assert response.status_code == 200
    assert [(r["outcome"], r.get("code")) for r in response.json()["results"]] == [
        ("release-created", None),
        ("rejected", "INVALID_DIGEST"),
    ]
    assert len(services.store.list_releases().items) == 1


def test_unknown_function_name_is_not_found(client: TestClient) -> None:
    response = client.post(
        "/runtime/webhooks/eventgrid?functionName=other", content=b"[]", headers={"content-type": "application/json"}
    )
    assert response.status_code == 404 and response.json()["code"] == "UNKNOWN_FUNCTION"


def _binding_event(raw: dict[str, Any]) -> Any:
    """Decode a fixture exactly as the Functions worker does before calling the trigger."""
    return EventGridEventInConverter.decode(Datum(type="json", value=json.dumps(raw)), trigger_metadata=None)


def test_trigger_with_a_real_event_grid_event(services: Services) -> None:
    event = _binding_event(load_event("eventgrid-image-pushed"))
    assert isinstance(event, func.EventGridEvent)
    on_acr_event(event)
    assert [r.tags for r in services.store.list_releases().items] == [frozenset({"1.4.2"})]


def test_trigger_with_a_real_cloud_event(services: Services) -> None:
    # azure-functions 1.25+ hands it over as func.CloudEvent; the Python 3.11 worker's 1.24 reads it as an
    # Event Grid-schema event that lost its type, source and time. Either way the release is created.
    event = _binding_event(load_event("cloudevents-image-pushed"))
    assert type(event).__name__ in {"CloudEvent", "EventGridEvent"}
    on_acr_event(event)
    [release] = services.store.list_releases().items
    assert (release.registry, release.repository, release.tags) == (
        "contosoacr.azurecr.io",
        "inspection/camera",
        frozenset({"1.4.2"}),
    )


def test_trigger_drops_a_poison_event_without_raising(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    raw = copy.deepcopy(load_event("eventgrid-image-pushed"))
    raw["data"]["target"]["repository"] = "UPPER/case"
    on_acr_event(_binding_event(raw))
    assert nothing_written(services)
    assert any(r.levelname == "WARNING" and "INVALID_REPOSITORY" in r.getMessage() for r in caplog.records)


def test_healthz_names_backends_without_secrets(client: TestClient) -> None:
    body = client.get("/api/healthz").json()
    assert body["status"] == "ok" and body["backends"]["store"] == "sqlite"
