"""The bridge from the local parent registry's notifications to ACR events for the ingress.

The parent (a CNCF distribution registry) posts its notifications to the dev API
(``POST /api/dev/registry-notifications``); each push of a manifest by tag becomes the ``ImagePushed``
Event Grid would deliver, each deletion of a known release an ``ImageDeleted``, encoded by
:mod:`shared.domain.acr_events` and ingested one by one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.adapters.oci import MANIFEST_MEDIA_TYPES
from shared.bootstrap import Services
from shared.domain.acr_events import AcrEventType, RegistryEvent, decode_event, image_deleted_event, image_pushed_event
from shared.errors import InvalidInput, NotFound
from shared.local.names import registry_topic
from shared.services.ingest import IngestResult, ingest_event

NOTIFICATIONS_PATH = "/api/dev/registry-notifications"
# What the distribution registry sends its notifications as.
DISTRIBUTION_EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def notification_url(host: str, port: int) -> str:
    """Where the parent registry posts its notifications: the dev API, reached over loopback when it
    listens on every interface."""
    target = host.strip("[]")
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(target)
        if address.is_unspecified:
            target = "127.0.0.1" if address.version == 4 else "::1"
        if ipaddress.ip_address(target).version == 6:
            target = f"[{target}]"
    return f"http://{target}:{port}{NOTIFICATIONS_PATH}"


def acr_events_from_notifications(
    envelope: Any, *, login_server: str, now: Callable[[], datetime] | None = None
) -> list[dict[str, Any]]:
    """ACR-shaped Event Grid events for a distribution notification envelope.

    A push of a manifest by tag becomes ``ImagePushed`` (what ACR raises); a deletion of a manifest by
    digest becomes ``ImageDeleted``. Pulls, blob pushes, pushes by digest alone and tag deletions are
    left out, as ACR raises no release-worthy event for them. ``data.request.host`` is the parent's
    login server as acrsync knows it, so release ids match those of ``acrsync push`` and the CLI.
    Event ids are the registry's, so a notification the registry sends again is a redelivery.

    Raises:
        InvalidInput: ``MALFORMED_EVENT`` when the envelope is not ``{"events": [...]}``.
    """
    if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
        raise InvalidInput("MALFORMED_EVENT", 'a notification envelope is {"events": [...]}')
    clock = now or (lambda: datetime.now(UTC))
    events: list[dict[str, Any]] = []
    for raw in envelope["events"]:
        event = _acr_event(raw, login_server, clock) if isinstance(raw, dict) else None
        if event is not None:
            events.append(event)
    return events


def _acr_event(raw: Mapping[str, Any], login_server: str, clock: Callable[[], datetime]) -> dict[str, Any] | None:
    target = raw.get("target")
    target = target if isinstance(target, dict) else {}
    request = raw.get("request")
    request = request if isinstance(request, dict) else {}
    repository, digest, tag = target.get("repository"), target.get("digest"), target.get("tag")
    if not isinstance(repository, str) or not repository or not isinstance(digest, str) or not digest:
        return None
    raw_id = raw.get("id")
    actor = raw.get("actor")
    common: dict[str, Any] = {
        "event_id": raw_id if isinstance(raw_id, str) and raw_id else str(uuid.uuid4()),
        "topic": registry_topic(login_server),
        "registry": login_server,
        "repository": repository,
        "digest": digest,
        "at": _timestamp(raw.get("timestamp"), clock),
        "actor": actor["name"] if isinstance(actor, dict) and isinstance(actor.get("name"), str) else None,
        "user_agent": str(request.get("useragent") or ""),
    }
    action, media_type = raw.get("action"), target.get("mediaType")
    if action == "push" and isinstance(tag, str) and tag and media_type in MANIFEST_MEDIA_TYPES:
        size = target.get("size", target.get("length"))
        size = size if isinstance(size, int) and not isinstance(size, bool) else None
        return image_pushed_event(tag=tag, media_type=media_type, size=size, **common)
    if action == "delete" and not tag:
        return image_deleted_event(media_type=media_type if isinstance(media_type, str) else None, **common)
    return None


def _timestamp(value: Any, clock: Callable[[], datetime]) -> datetime:
    """The registry's RFC 3339 time; the current time when missing."""
    parsed: datetime | None = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
    if parsed is None or parsed.tzinfo is None:
        return clock()
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # an offset that carries it past year 1 or 9999
        return clock()


def ingest_notifications(services: Services, events: list[dict[str, Any]]) -> list[IngestResult]:
    """Ingest bridged registry notifications each on its own, so one the ingress refuses does not
    hold back the others (the registry would resend the whole envelope forever)."""
    results = []
    for event in events:
        if _unknown_deletion(services, event):
            continue  # a blob or an untagged manifest: the registry's delete events do not tell them apart
        results.append(ingest_event(services, event))  # a poison event is logged, dropped and reported
    return results


def _unknown_deletion(services: Services, event: dict[str, Any]) -> bool:
    if event["eventType"] != AcrEventType.IMAGE_DELETED:
        return False
    try:
        decoded = decode_event(event, registry_hint=services.settings.registry)
    except InvalidInput:
        return False  # the ingress refuses it and reports why
    if not isinstance(decoded, RegistryEvent):
        return False
    try:
        services.store.get_release(decoded.release_id)
    except NotFound:
        return True
    return False
