"""Routes that exist only under `acrsync dev`: take sites offline and back, and (real-registry mode)
the bridge from the parent registry's notifications to the event ingress.

:func:`orchestrations.api.create_app` includes this router only when it is given :class:`DevTools`, which
only the local runtime does; the Azure app never has these routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from orchestrations.api.bodies import read_capped_body
from orchestrations.api.ingress import results_view
from shared.bootstrap import get_services
from shared.domain.acr_events import MAX_DELIVERY_BYTES, AcrEventType, load_json
from shared.domain.workloads import parse_image_reference
from shared.errors import InvalidInput, NotFound, SiteNotFound, Unsupported
from shared.local.bridge import (
    DISTRIBUTION_EVENTS_MEDIA_TYPE,
    NOTIFICATIONS_PATH,
    acr_events_from_notifications,
    ingest_notifications,
)
from shared.services.ingest import IngestOutcome, require_one_accepted

router = APIRouter(prefix="/api/dev", tags=["dev"])
_NOTIFICATION_MEDIA_TYPES = {DISTRIBUTION_EVENTS_MEDIA_TYPE, "application/json"}


class SiteSwitch(Protocol):
    """What takes sites offline and back: the simulated connected registries or the local registries."""

    def set_online(self, site: str, online: bool) -> None: ...

    def is_online(self, site: str) -> bool: ...


class ParentRegistry(Protocol):
    """The local parent registry whose notifications the bridge receives (real-registry mode)."""

    @property
    def login_server(self) -> str: ...

    def parent_pushed(self) -> None:
        """Tell the sites' syncers that the parent holds something new."""


class Workloads(Protocol):
    """The simulated sites' clusters: what they run, and the pull errors injected into them."""

    def inject_pull_error(self, site: str, image: str) -> None: ...


@dataclass(frozen=True)
class DevTools:
    """What the dev routes steer: the sites' switch, their simulated workloads, and in real-registry
    mode the parent registry."""

    sites: SiteSwitch | None = None
    parent: ParentRegistry | None = None
    workloads: Workloads | None = None


def _tools(request: Request) -> DevTools:
    tools: DevTools = request.app.state.dev_tools
    return tools


def _switch(request: Request) -> SiteSwitch:
    switch = _tools(request).sites
    if switch is None:
        raise Unsupported("NOT_SIMULATED", "start acrsync dev with --registries simulated or real")
    return switch


@router.get("/sites")
def simulated_sites(request: Request) -> JSONResponse:
    switch = _switch(request)
    sites = get_services().store.list_sites()
    return JSONResponse({"value": [{"name": s.name, "online": switch.is_online(s.name)} for s in sites]})


@router.post("/sites/{site}/pull-errors")
async def inject_pull_error(site: str, request: Request) -> JSONResponse:
    """Make a simulated site fail to pull an image (`{"image": "<reference>"}`) from now on."""
    workloads = _tools(request).workloads
    if workloads is None:
        raise Unsupported("NOT_SIMULATED", "start acrsync dev to simulate the sites' workloads")
    body: Any = load_json(await read_capped_body(request, 4096))
    image = body.get("image") if isinstance(body, dict) else None
    if not isinstance(image, str):
        raise InvalidInput("INVALID_IMAGE_REFERENCE", 'send {"image": "<repository>:<tag>"}')
    parse_image_reference(image)
    if site not in {s.name for s in get_services().store.list_sites()}:
        raise SiteNotFound(site[:64])
    workloads.inject_pull_error(site, image)
    return JSONResponse({"site": site, "image": image})


@router.post("/sites/{site}/{state}")
def set_site_state(site: str, state: str, request: Request) -> JSONResponse:
    switch = _switch(request)
    if state not in ("online", "offline"):
        raise InvalidInput("INVALID_SITE_STATE", "use online or offline")
    try:
        switch.set_online(site, state == "online")
    except NotFound as exc:
        raise SiteNotFound(site[:64]) from exc
    return JSONResponse({"site": site, "online": state == "online"})


@router.post(NOTIFICATIONS_PATH.removeprefix("/api/dev"))
async def registry_notifications(request: Request) -> JSONResponse:
    """The parent registry's notifications (distribution envelope) as ACR events for the ingress.

    Pushes by tag become ``ImagePushed``, deletions of known releases ``ImageDeleted``; the rest is
    acknowledged and ignored. Answers 200 once ingested (the registry retries anything else, in
    order, so a 503 from a busy store delays later notifications rather than losing them).
    """
    parent = _tools(request).parent
    if parent is None:
        raise Unsupported("NOT_REAL_REGISTRIES", "start acrsync dev with --registries real")
    media_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type not in _NOTIFICATION_MEDIA_TYPES:
        raise InvalidInput("UNSUPPORTED_MEDIA_TYPE", f"send {DISTRIBUTION_EVENTS_MEDIA_TYPE}")
    envelope: Any = load_json(await read_capped_body(request, MAX_DELIVERY_BYTES))
    events = acr_events_from_notifications(envelope, login_server=parent.login_server)
    if any(event["eventType"] == AcrEventType.IMAGE_PUSHED for event in events):
        parent.parent_pushed()  # sites in an open window start copying while the release is registered
    results = await run_in_threadpool(ingest_notifications, get_services(), events)
    require_one_accepted([r for r in results if r.outcome is IngestOutcome.REJECTED], of=len(results))
    ignored = len(envelope.get("events", [])) - len(results)
    return JSONResponse({"results": results_view(results), "ignored": ignored})
