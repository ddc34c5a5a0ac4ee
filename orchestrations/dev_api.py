"""Routes that exist only under `acrsync dev`: take simulated sites offline and back."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from orchestrations.problems import problem
from shared.adapters.simulated import SimulatedConnectedRegistries
from shared.bootstrap import get_services
from shared.errors import NotFound

router = APIRouter(prefix="/api/dev", tags=["dev"])


def install(app: FastAPI, simulation: SimulatedConnectedRegistries | None) -> None:
    """Mount the dev routes (never in Azure: only the dev command calls this)."""
    app.state.simulation = simulation
    app.include_router(router)


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
        return problem(404, "SITE_NOT_FOUND", "Site not found", f"no simulated site named {site[:64]!r}")
    return JSONResponse({"site": site, "online": state == "online"})


def _simulation(request: Request) -> SimulatedConnectedRegistries | None:
    return getattr(request.app.state, "simulation", None)


def _not_simulated() -> JSONResponse:
    return problem(409, "NOT_SIMULATED", "Sites are not simulated", "start acrsync dev with --registries simulated")
