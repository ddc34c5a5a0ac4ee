"""Routes that exist only under `acrsync dev`: take sites offline and back, and (real-registry mode)
the bridge from the parent registry's notifications to the event ingress."""

from __future__ import annotations

import json
from typing import Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from orchestrations.problems import problem
from shared.bootstrap import get_services
from shared.devmode_registries import (
    DISTRIBUTION_EVENTS_MEDIA_TYPE,
    NOTIFICATIONS_PATH,
    LocalRegistries,
    acr_events_from_notifications,
    ingest_notifications,
)
from shared.domain.acr_events import MAX_DELIVERY_BYTES, AcrEventType
from shared.errors import NotFound

router = APIRouter(prefix="/api/dev", tags=["dev"])
_NOTIFICATION_MEDIA_TYPES = {DISTRIBUTION_EVENTS_MEDIA_TYPE, "application/json"}


class SiteSwitch(Protocol):
    """What takes sites offline and back: the simulated connected registries or the local registries."""

    def set_online(self, site: str, online: bool) -> None: ...

    def is_online(self, site: str) -> bool: ...


def install(app: FastAPI, simulation: SiteSwitch | None, registries: LocalRegistries | None = None) -> None:
    """Mount the dev routes (never in Azure: only the dev command calls this). In real-registry mode
    the local registries switch the sites and receive the parent's notifications; they are found in
    ``simulation`` when not given on their own."""
    if registries is None and isinstance(simulation, LocalRegistries):
        registries = simulation
    app.state.simulation = simulation
    app.state.registries = registries
    if not getattr(app.state, "dev_routes_installed", False):
        app.include_router(router)
        app.state.dev_routes_installed = True


@router.get("/sites")
def simulated_sites(request: Request) -> JSONResponse:
    simulation = _simulation(request)
    if simulation is None:
        return _not_simulated()
    sites = get_services().store.list_sites()
    return JSONResponse({"value": [{"name": s.name, "online": simulation.is_online(s.name)} for s in sites]})


@router.post("/sites/{site}/{state}")
def set_site_state(site: str, state: str, request: Request) -> JSONResponse:
    simulation = _simulation(request)
    if simulation is None:
        return _not_simulated()
    if state not in ("online", "offline"):
        return problem(400, "INVALID_SITE_STATE", "Invalid site state", "use online or offline")
    try:
        simulation.set_online(site, state == "online")
    except NotFound:
        return problem(404, "SITE_NOT_FOUND", "Site not found", f"no dev site named {site[:64]!r}")
    return JSONResponse({"site": site, "online": state == "online"})


@router.post(NOTIFICATIONS_PATH.removeprefix("/api/dev"))
async def registry_notifications(request: Request) -> JSONResponse:
    """The parent registry's notifications (distribution envelope) as ACR events for the ingress.

    Pushes by tag become ``ImagePushed``, deletions of known releases ``ImageDeleted``; the rest is
    acknowledged and ignored. Answers 200 once ingested (the registry retries anything else, in
    order, so a 503 from a busy store delays later notifications rather than losing them).
    """
    registries = _registries(request)
    if registries is None:
        return problem(409, "NOT_REAL_REGISTRIES", "No local registries", "start acrsync dev with --registries real")
    media_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type not in _NOTIFICATION_MEDIA_TYPES:
        return problem(
            400, "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type", f"send {DISTRIBUTION_EVENTS_MEDIA_TYPE}"
        )
    body = await request.body()
    if len(body) > MAX_DELIVERY_BYTES:
        return problem(400, "BATCH_TOO_LARGE", "Delivery too large", f"the limit is {MAX_DELIVERY_BYTES} bytes")
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return problem(400, "MALFORMED_JSON", "Malformed JSON", "the body is not valid JSON")
    events = acr_events_from_notifications(envelope, login_server=registries.login_server)  # InvalidInput -> 400
    if any(event["eventType"] == AcrEventType.IMAGE_PUSHED for event in events):
        registries.parent_pushed()  # sites in an open window start copying while the release is registered
    results = await run_in_threadpool(ingest_notifications, get_services(), events)
    return JSONResponse(
        {
            "results": [
                {
                    "event_id": r.event_id,
                    "outcome": r.outcome.value,
                    "release_id": r.release_id,
                    "jobs_sent": r.jobs_sent,
                }
                for r in results
            ],
            "ignored": len(envelope.get("events", [])) - len(results),
        }
    )


def _simulation(request: Request) -> SiteSwitch | None:
    return getattr(request.app.state, "simulation", None)


def _registries(request: Request) -> LocalRegistries | None:
    return getattr(request.app.state, "registries", None)


def _not_simulated() -> JSONResponse:
    return problem(
        409, "NOT_SIMULATED", "Sites are not simulated", "start acrsync dev with --registries simulated or real"
    )
