"""The ACR event encoder beside the decoder: what `acrsync push`, the demo and the real-registry bridge raise
decodes to what they meant, in the shape of the real ACR sample."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.acr_events import (
    AcrEventType,
    RegistryEvent,
    decode_event,
    image_deleted_event,
    image_pushed_event,
)
from shared.domain.names import release_id_for
from shared.errors import InvalidInput
from tests.builders import REGISTRY, REGISTRY_TOPIC
from tests.fakes import load_event

AT = datetime(2026, 11, 24, 9, 41, 12, 418924, tzinfo=UTC)
DIGEST = "sha256:90fe64c3b638413b181c1920a2d2068c75ada402ce8f88caa522f17a01ac2560"


def _pushed(**kw: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "event_id": "a6e5ef2e-976b-4252-b018-af07f05a52f1",
        "topic": REGISTRY_TOPIC,
        "registry": REGISTRY,
        "repository": "inspection/camera",
        "tag": "1.4.2",
        "digest": DIGEST,
        "at": AT,
        "size": 1574,
    }
    fields.update(kw)
    return image_pushed_event(**fields)  # type: ignore[arg-type]


def test_a_push_decodes_to_the_release_it_names() -> None:
    event = decode_event(_pushed(actor="ci-pipeline"))
    assert isinstance(event, RegistryEvent)
    assert (event.event_type, event.registry, event.repository, event.tag, event.digest) == (
        AcrEventType.IMAGE_PUSHED,
        REGISTRY,
        "inspection/camera",
        "1.4.2",
        DIGEST,
    )
    assert (event.occurred_at, event.size, event.actor, event.is_edge) == (AT, 1574, "ci-pipeline", False)
    assert event.release_id == release_id_for(REGISTRY, "inspection/camera", DIGEST)


def test_a_deletion_names_the_manifest_without_tag_or_size() -> None:
    raw = image_deleted_event(
        event_id="d1", topic=REGISTRY_TOPIC, registry=REGISTRY, repository="retail/pos-api", digest=DIGEST, at=AT
    )
    event = decode_event(raw)
    assert isinstance(event, RegistryEvent)
    assert (event.event_type, event.repository, event.tag, event.size) == (
        AcrEventType.IMAGE_DELETED,
        "retail/pos-api",
        None,
        None,
    )
    assert raw["subject"] == "retail/pos-api"


def test_the_encoded_push_has_the_shape_of_the_acr_sample() -> None:
    sample = load_event("eventgrid-image-pushed")
    encoded = _pushed()
    assert set(encoded) == set(sample)
    assert set(encoded["data"]) <= set(sample["data"])  # type: ignore[arg-type]
    assert encoded["data"]["target"] == sample["data"]["target"]  # type: ignore[index]
    assert (encoded["subject"], encoded["eventType"], encoded["topic"]) == (
        sample["subject"],
        sample["eventType"],
        sample["topic"],
    )


def test_encoding_the_same_event_twice_gives_the_same_event() -> None:
    assert _pushed() == _pushed()
    assert _pushed()["data"] != _pushed(event_id="another")["data"]  # data.id follows the event id


@pytest.mark.parametrize(
    "name", ["eventgrid-image-pushed", "cloudevents-image-pushed", "eventgrid-connected-registry-image-pushed"]
)
def test_an_instance_serving_one_registry_refuses_events_for_another(name: str) -> None:
    raw = load_event(name)
    assert decode_event(raw, registry_hint=REGISTRY).registry == REGISTRY  # its own: taken
    with pytest.raises(InvalidInput) as refused:
        decode_event(raw, registry_hint="myacr.azurecr.io")
    assert refused.value.code == "FOREIGN_REGISTRY"
    assert "this instance serves myacr.azurecr.io" in refused.value.detail


def test_a_data_endpoint_host_is_the_same_registry() -> None:
    raw = load_event("eventgrid-image-pushed")
    raw["data"]["request"]["host"] = "contosoacr.westeurope.data.azurecr.io"
    assert decode_event(raw, registry_hint=REGISTRY).registry == REGISTRY
