"""ACR events as Event Grid delivers them (Event Grid schema or CloudEvents 1.0): decoding, and the one
encoder of the events acrsync itself raises locally (``acrsync push``, the demo, the real-registry bridge).

Pure functions: a raw delivery in, typed events out, or :class:`InvalidInput` with a stable code
naming the problem. Fields per the ACR event schema; ``actor``, ``source``, ``request.addr``,
``location`` and ``target.url`` are optional, and so is ``request.host``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.domain.model import ArtifactKind
from shared.domain.names import (
    release_id_for,
    validate_digest,
    validate_login_server,
    validate_repository,
    validate_tag,
)
from shared.domain.observations import EARLIEST_BELIEVABLE_TIME, MAX_CLOCK_SKEW
from shared.errors import InvalidInput

VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
# Event Grid's own limit for one delivery (events and array together).
MAX_DELIVERY_BYTES = 1024 * 1024
MAX_EVENTS_PER_DELIVERY = 5000
# An ACR event nests four objects deep; anything far deeper is not an event.
MAX_EVENT_DEPTH = 16
# Event ids are GUIDs; names and media types are short. What is kept is bounded, so no event can
# grow a stored entity past its size limit.
MAX_EVENT_ID_CHARS = 256
MAX_TEXT_CHARS = 1024
_JSON_MEDIA_TYPES = {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
_REGISTRY_IN_TOPIC = re.compile(r"/providers/Microsoft\.ContainerRegistry/registries/([^/]+)", re.IGNORECASE)
_EDGE_IN_TOPIC = re.compile(r"/connectedRegistries/([^/]+)/?$", re.IGNORECASE)


class AcrEventType(StrEnum):
    IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
    IMAGE_DELETED = "Microsoft.ContainerRegistry.ImageDeleted"
    CHART_PUSHED = "Microsoft.ContainerRegistry.ChartPushed"
    CHART_DELETED = "Microsoft.ContainerRegistry.ChartDeleted"

    @property
    def is_push(self) -> bool:
        return self in (AcrEventType.IMAGE_PUSHED, AcrEventType.CHART_PUSHED)

    @property
    def kind(self) -> ArtifactKind:
        return (
            ArtifactKind.CHART
            if self in (AcrEventType.CHART_PUSHED, AcrEventType.CHART_DELETED)
            else ArtifactKind.IMAGE
        )


@dataclass(frozen=True)
class RegistryEvent:
    """One push or delete of a manifest, on the parent registry or (``connected_registry`` set) at a site."""

    event_id: str
    event_type: AcrEventType
    registry: str
    repository: str
    digest: str
    occurred_at: datetime
    tag: str | None = None
    media_type: str | None = None
    size: int | None = None
    actor: str | None = None
    connected_registry: str | None = None

    @property
    def is_edge(self) -> bool:
        return self.connected_registry is not None

    @property
    def release_id(self) -> str:
        """The release this event is about: (registry, repository, digest)."""
        return release_id_for(self.registry, self.repository, self.digest)

    def as_of_arrival(self, now: datetime) -> RegistryEvent:
        """This event with a time no later than its arrival (give or take clock skew): a timestamp in
        the future would otherwise make its release the newest of its tag for as long as it lasts."""
        if self.occurred_at > now + MAX_CLOCK_SKEW:
            return replace(self, occurred_at=now)
        return self


@dataclass(frozen=True)
class ValidationRequest:
    """Event Grid's subscription-validation handshake (Event Grid schema)."""

    event_id: str
    validation_code: str


@dataclass(frozen=True)
class OtherEvent:
    """An event of a type acrsync does not act on: acknowledged and ignored."""

    event_id: str
    event_type: str


DecodedEvent = RegistryEvent | ValidationRequest | OtherEvent


def parse_delivery(body: bytes, content_type: str | None) -> list[Mapping[str, Any]]:
    """Split a webhook delivery into raw events (an array, or one CloudEvent object).

    Raises:
        InvalidInput: ``UNSUPPORTED_MEDIA_TYPE``, ``BATCH_TOO_LARGE``, ``MALFORMED_JSON``, ``MALFORMED_EVENT``.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_MEDIA_TYPES:
        raise InvalidInput(
            "UNSUPPORTED_MEDIA_TYPE",
            f"content type {media_type or '(none)'!r} is not one of {', '.join(sorted(_JSON_MEDIA_TYPES))}",
        )
    if len(body) > MAX_DELIVERY_BYTES:
        raise InvalidInput("BATCH_TOO_LARGE", f"delivery is {len(body)} bytes; the limit is {MAX_DELIVERY_BYTES}")
    payload = load_json(body)
    events = payload if isinstance(payload, list) else [payload]
    if len(events) > MAX_EVENTS_PER_DELIVERY:
        raise InvalidInput(
            "BATCH_TOO_LARGE", f"delivery holds {len(events)} events; the limit is {MAX_EVENTS_PER_DELIVERY}"
        )
    if not events:
        raise InvalidInput("MALFORMED_EVENT", "the delivery holds no events")
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise InvalidInput("MALFORMED_EVENT", f"event [{index}] is not a JSON object")
    return events


def load_json(body: bytes) -> Any:
    """Parse a JSON request body.

    Raises:
        InvalidInput: ``MALFORMED_JSON`` when it is not JSON or nests too deeply to parse.
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidInput("MALFORMED_JSON", "the body nests too deeply to be an event delivery") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("MALFORMED_JSON", "the body is not valid JSON") from exc


def check_plain_json(value: Any, *, max_depth: int = MAX_EVENT_DEPTH) -> None:
    """Refuse what JSON allows but nothing downstream can store or show: text with unpaired surrogates
    (``\\ud800`` is valid JSON but not Unicode) and nesting deeper than ``max_depth``.

    Raises:
        InvalidInput: ``INVALID_TEXT`` or ``MALFORMED_EVENT``.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _require_unicode(item)
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise InvalidInput("MALFORMED_EVENT", f"the event nests deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key in item:
                    _require_unicode(key)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)


def _require_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            "INVALID_TEXT", "the event holds text that is not valid Unicode (an unpaired surrogate)"
        ) from None


def decode_event(raw: Mapping[str, Any], *, registry_hint: str | None = None) -> DecodedEvent:
    """Decode one event of either schema.

    Args:
        raw: the event as delivered (Event Grid schema or CloudEvents 1.0).
        registry_hint: the parent registry's login server when configured: an event for another
            registry is refused (``FOREIGN_REGISTRY``); otherwise it comes from ``data.request.host``
            (parent events) or the registry name in the topic.

    Raises:
        InvalidInput: ``MALFORMED_EVENT``, ``INVALID_TEXT``, ``MISSING_FIELD`` (naming the field),
            ``FIELD_TOO_LONG``, ``INVALID_DIGEST``, ``INVALID_REPOSITORY``, ``INVALID_TAG``, ``INVALID_TIME``,
            ``FOREIGN_REGISTRY``.
    """
    check_plain_json(raw)
    cloud = "specversion" in raw
    event_id = _text(raw, "id", limit=MAX_EVENT_ID_CHARS)
    event_type = _text(raw, "type" if cloud else "eventType")
    topic = raw.get("source" if cloud else "topic")
    data = raw.get("data")
    if event_type == VALIDATION_EVENT_TYPE:
        code = _text(_object(data, "data"), "validationCode", where="data")
        return ValidationRequest(event_id=event_id, validation_code=code)
    try:
        acr_type = AcrEventType(event_type)
    except ValueError:
        return OtherEvent(event_id=event_id, event_type=event_type)

    data = _object(data, "data")
    target = _object(data.get("target"), "data.target")
    edge_name = _connected_registry_name(data, topic)
    repository = validate_repository(_text(target, "repository", where="data.target"))
    digest = validate_digest(_text(target, "digest", where="data.target"))
    tag = target.get("version") if acr_type.kind is ArtifactKind.CHART and target.get("version") else target.get("tag")
    size = target.get("size", target.get("length"))
    actor = _optional_object(data, "actor")
    return RegistryEvent(
        event_id=event_id,
        event_type=acr_type,
        registry=_registry(data, topic, registry_hint, edge=edge_name is not None),
        repository=repository,
        digest=digest,
        occurred_at=_time(raw.get("time" if cloud else "eventTime") or data.get("timestamp")),
        tag=validate_tag(tag) if tag not in (None, "") else None,
        media_type=_optional_text(target, "mediaType", where="data.target"),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        actor=_optional_text(actor, "name", where="data.actor"),
        connected_registry=edge_name,
    )


def event_from_function_binding(
    *,
    event_id: str,
    event_type: str,
    topic: str | None,
    subject: str | None,
    event_time: datetime | None,
    data: Any,
    data_version: str | None,
) -> dict[str, Any]:
    """Rebuild the Event Grid-schema dict from the fields the Functions Event Grid binding exposes.

    The Python 3.11 worker's azure-functions (1.24) reads every delivery as the Event Grid schema, so a
    CloudEvents 1.0 delivery reaches the trigger without its type, source and time. ACR's payload says
    what happened (``data.action``) and when (``data.timestamp``), and names the registry
    (``data.request.host``), so the event type is recovered from it rather than the event dropped.
    """
    if not event_type and isinstance(data, Mapping):
        event_type = _ACTION_EVENT_TYPES.get(str(data.get("action")), "")
    return {
        "id": event_id,
        "eventType": event_type,
        "topic": topic,
        "subject": subject,
        "eventTime": event_time.isoformat() if event_time else None,
        "data": data,
        "dataVersion": data_version,
    }


# ACR's data.action for each event type: how an event that lost its type is recognised.
_ACTION_EVENT_TYPES = {
    "push": AcrEventType.IMAGE_PUSHED.value,
    "delete": AcrEventType.IMAGE_DELETED.value,
    "chart_push": AcrEventType.CHART_PUSHED.value,
    "chart_delete": AcrEventType.CHART_DELETED.value,
}


# -- encoding ---------------------------------------------------------------------------------------

OCI_IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# data.id and request.id follow from the event id, so encoding the same event twice gives the same event.
_DERIVED_IDS = uuid.UUID("3d4f7a52-2b1e-4f1c-9f0e-6a1c2b7d9e10")


def image_pushed_event(
    *,
    event_id: str,
    topic: str,
    registry: str,
    repository: str,
    tag: str,
    digest: str,
    at: datetime,
    media_type: str = OCI_IMAGE_MANIFEST,
    size: int | None = None,
    actor: str | None = None,
    user_agent: str = "",
) -> dict[str, Any]:
    """An ``ImagePushed`` event in the Event Grid schema, as ACR raises it for a push by tag.

    Args:
        event_id: the event's id (a redelivery keeps it).
        topic: the parent registry's ARM id.
        registry: its login server (``data.request.host``).
    """
    target: dict[str, Any] = {"mediaType": media_type, "digest": digest, "repository": repository}
    if size is not None:
        target.update(size=size, length=size)
    target["tag"] = tag
    origin = _Origin(event_id, topic, registry, at, actor, user_agent)
    return _event(AcrEventType.IMAGE_PUSHED, f"{repository}:{tag}", target, origin, method="PUT")


def image_deleted_event(
    *,
    event_id: str,
    topic: str,
    registry: str,
    repository: str,
    digest: str,
    at: datetime,
    media_type: str | None = None,
    actor: str | None = None,
    user_agent: str = "",
) -> dict[str, Any]:
    """An ``ImageDeleted`` event in the Event Grid schema: a manifest deleted by digest (no tag, no size)."""
    target: dict[str, Any] = {"digest": digest, "repository": repository}
    if media_type is not None:
        target["mediaType"] = media_type
    origin = _Origin(event_id, topic, registry, at, actor, user_agent)
    return _event(AcrEventType.IMAGE_DELETED, repository, target, origin, method="DELETE")


@dataclass(frozen=True)
class _Origin:
    """Where and when an encoded event comes from, and who caused it."""

    event_id: str
    topic: str
    registry: str
    at: datetime
    actor: str | None
    user_agent: str


def _event(
    event_type: AcrEventType, subject: str, target: dict[str, Any], origin: _Origin, *, method: str
) -> dict[str, Any]:
    timestamp = origin.at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    data: dict[str, Any] = {
        "id": str(uuid.uuid5(_DERIVED_IDS, origin.event_id)),
        "timestamp": timestamp,
        "action": "push" if event_type.is_push else "delete",
        "target": target,
        "request": {
            "id": str(uuid.uuid5(_DERIVED_IDS, origin.event_id + "/request")),
            "host": origin.registry,
            "method": method,
            "useragent": origin.user_agent,
        },
    }
    if origin.actor:
        data["actor"] = {"name": origin.actor}
    return {
        "id": origin.event_id,
        "topic": origin.topic,
        "subject": subject,
        "eventType": event_type.value,
        "eventTime": timestamp,
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def _registry(data: Mapping[str, Any], topic: Any, hint: str | None, *, edge: bool) -> str:
    """The parent registry's login server: the configured one (``hint``), else what the event names.

    Raises:
        InvalidInput: ``FOREIGN_REGISTRY`` when the event names another registry than the configured one.
    """
    named = _named_registry(data, topic, edge=edge)
    if hint:
        if named is not None and registry_name(named) != registry_name(hint):
            raise InvalidInput("FOREIGN_REGISTRY", f"this instance serves {hint}; the event is for {named}")
        return hint
    if named is not None:
        return named
    raise InvalidInput("MISSING_FIELD", "data.request.host is missing and the topic names no registry")


def _named_registry(data: Mapping[str, Any], topic: Any, *, edge: bool) -> str | None:
    request = _optional_object(data, "request")
    host = request.get("host")
    # At the edge request.host names the connected registry, not the parent the release belongs to.
    if not edge and isinstance(host, str) and host:
        return validate_login_server(host)
    match = _REGISTRY_IN_TOPIC.search(topic) if isinstance(topic, str) else None
    if match:
        return validate_login_server(f"{match.group(1).lower()}.azurecr.io")
    return None


def registry_name(login_server: str) -> str:
    """A registry's name from any of its host names: ``contosoacr`` for ``contosoacr.azurecr.io`` and
    for its data endpoint ``contosoacr.westeurope.data.azurecr.io``; a loopback address stays whole."""
    host = login_server.lower()
    return host if host[:1].isdigit() or host.startswith("localhost") else host.split(".", 1)[0]


def _connected_registry_name(data: Mapping[str, Any], topic: Any) -> str | None:
    # The wire key's casing differs between sources (connectedregistry vs connectedRegistry).
    for key, value in data.items():
        if key.lower() == "connectedregistry" and isinstance(value, dict):
            name = value.get("name")
            if isinstance(name, str) and name:
                return name.lower()
    match = _EDGE_IN_TOPIC.search(topic) if isinstance(topic, str) else None
    return match.group(1).lower() if match else None


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput("MISSING_FIELD", "eventTime (or time) is missing")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("INVALID_TIME", f"{value[:40]!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise InvalidInput("INVALID_TIME", f"{value[:40]!r} has no time zone")
    try:
        at = parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("INVALID_TIME", f"{value[:40]!r} is outside the representable range") from None
    if at < EARLIEST_BELIEVABLE_TIME:
        raise InvalidInput("INVALID_TIME", f"{value[:40]!r} is before {EARLIEST_BELIEVABLE_TIME.year}")
    return parsed


def _optional_object(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key)
    return value if isinstance(value, dict) else {}


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput("MISSING_FIELD", f"{where} is missing or not an object")
    return value


def _text(container: Mapping[str, Any], key: str, *, where: str = "", limit: int = MAX_TEXT_CHARS) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput("MISSING_FIELD", f"{where + '.' if where else ''}{key} is missing")
    if len(value) > limit:
        raise InvalidInput(
            "FIELD_TOO_LONG", f"{where + '.' if where else ''}{key} is {len(value)} characters; the limit is {limit}"
        )
    return value


def _optional_text(container: Mapping[str, Any], key: str, *, where: str) -> str | None:
    value = container.get(key)
    return _text(container, key, where=where) if isinstance(value, str) and value else None
