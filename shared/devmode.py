"""`acrsync dev`: the whole product on one machine, on the embedded SQLite default.

Sites come from a sites file; each site's connected registry is simulated (it syncs at its window
openings and can be taken offline and back) and reports ARM-shaped state through the same port as
the ARM adapter, so the workers reach the decisions they would reach in Azure.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from shared.adapters.simulated import SimulatedConnectedRegistries, simulated_resource_id
from shared.bootstrap import Services, SystemClock, bootstrap, use_services
from shared.config import DATA_DIR, Settings
from shared.errors import ConfigurationError
from shared.runtime import LocalRuntime, RuntimeOptions
from shared.services.sites_file import ImportReport, SitesFile, import_sites, load_sites_file

logger = logging.getLogger(__name__)

DEV_SWEEP_EVERY = timedelta(minutes=1)  # demo windows are minutes long; so is the sweep


class RegistryMode(StrEnum):
    SIMULATED = "simulated"
    REAL = "real"


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    port: int = 7071
    data_dir: Path = Path(".acrsync")
    sites_file: Path | None = None
    registries: RegistryMode = RegistryMode.SIMULATED
    workers: int = 4


class DevEnvironment:
    """Services, simulated sites and the local runtime for one `acrsync dev` process."""

    def __init__(self, options: DevOptions, *, environ: dict[str, str] | None = None) -> None:
        self.options = options
        env = dict(os.environ if environ is None else environ)
        self.settings = Settings.from_environ({**env, DATA_DIR: str(options.data_dir)})
        _refuse_open_network_binding(options.host, self.settings)
        clock = SystemClock()
        self.simulation: SimulatedConnectedRegistries | None = None
        adapters: dict[str, object] = {"clock": clock}
        if options.registries is RegistryMode.SIMULATED:
            # late-bound: the services are built just below, and the simulation asks them for sites
            self.simulation = SimulatedConnectedRegistries(lambda: self.services.store.list_sites(), clock.now)  # noqa: PLW0108
            adapters["arm"] = self.simulation
        self.services: Services = bootstrap(self.settings, **adapters)
        self.runtime = LocalRuntime(self.services, RuntimeOptions(workers=options.workers, sweep_every=DEV_SWEEP_EVERY))
        self.imported: ImportReport | None = None

    def load_sites(self) -> SitesFile | None:
        """Read and import the sites file (all or nothing); simulated sites get a simulated registry id."""
        if self.options.sites_file is None:
            return None
        simulated = self.options.registries is RegistryMode.SIMULATED
        parsed = load_sites_file(self.options.sites_file.read_text(), allow_short_windows=simulated)
        if simulated:
            parsed = replace(
                parsed,
                sites=[
                    site
                    if site.connected_registry
                    else replace(site, connected_registry=simulated_resource_id(site.name))
                    for site in parsed.sites
                ],
            )
        self.imported = import_sites(self.services, parsed)
        return parsed

    def start(self) -> None:
        use_services(self.services)
        self.runtime.start()

    def stop(self) -> None:
        self.runtime.stop()
        self.services.close()
        use_services(None)


def _refuse_open_network_binding(host: str, settings: Settings) -> None:
    """An API without a key is acceptable on loopback only."""
    if getattr(settings, "api_key", None):
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(f"--host {host} exposes the API beyond this machine: set ACRSYNC_API_KEY first")
