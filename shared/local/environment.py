"""`acrsync dev`: the whole product on one machine, on the embedded SQLite default.

Sites come from a sites file. With ``--registries simulated`` (the default) each site's connected
registry is simulated: it syncs at its window openings, can be taken offline and back, and reports
ARM-shaped state through the same port as the ARM adapter, so the workers reach the decisions they
would reach in Azure.

With ``--registries real`` the parent and every site run a real OCI registry on loopback
(:mod:`shared.local.registries`): a push into the parent is the trigger (its notifications reach
the dev API's bridge as ACR events), each site's registry is filled from the parent in its windows,
and the worker verifies with its real manifest check against the site's registry. Each site's
``endpoint`` is its loopback registry, whatever the sites file says; ARM-shaped state comes from the
sites' syncers.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from shared.adapters.oci import HttpManifestProbe
from shared.bootstrap import Services, SystemClock, bootstrap, use_services
from shared.config import DATA_DIR, REGISTRY, Settings
from shared.domain.model import Site
from shared.errors import ConfigurationError
from shared.local.bridge import notification_url
from shared.local.content import SyntheticContentReader, UnreadContentReader
from shared.local.names import local_resource_id
from shared.local.registries import LocalConnectedRegistries, LocalRegistries
from shared.local.registry_server import NotificationTarget
from shared.local.runtime import LocalRuntime, RuntimeOptions
from shared.local.simulated import SimulatedConnectedRegistries, simulated_resource_id
from shared.local.site_agents import LocalSiteAgents
from shared.local.tls import LocalCertificate, local_certificate
from shared.local.workloads import SimulatedWorkloads, simulated_cluster_id
from shared.ports import Clock
from shared.services.sites_file import ImportReport, SitesFile, SitesFileError, import_sites, load_sites_file
from shared.services.workloads import issue_report_token

logger = logging.getLogger(__name__)

DEV_SWEEP_EVERY = timedelta(minutes=1)  # demo windows are minutes long; so is the sweep
DEV_OBSERVE_EVERY = timedelta(seconds=20)  # what runs where shows within a minute of a push arriving


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
    """Services, sites (simulated or on real loopback registries) and the local runtime for one
    `acrsync dev` process.

    ``simulation`` is what switches sites online and offline (the dev API's ``/api/dev/sites``):
    the simulated connected registries, or in real-registry mode :attr:`registries`, which also
    receives the parent registry's notifications.
    """

    def __init__(
        self, options: DevOptions, *, environ: dict[str, str] | None = None, clock: Clock | None = None
    ) -> None:
        self.options = options
        env = dict(os.environ if environ is None else environ)
        served = {} if env.get(REGISTRY) else _registry_of(options.sites_file)
        # The registry this instance serves: ACRSYNC_REGISTRY, else the sites file's `registry:`; events
        # for another registry are refused at the ingress, and `acrsync push` follows it.
        self.settings = Settings.from_environ({**env, **served, DATA_DIR: str(options.data_dir)})
        _refuse_open_network_binding(options.host, self.settings)
        clock = clock or SystemClock()  # the demo passes a faster clock so windows come in seconds
        self.simulation: SimulatedConnectedRegistries | LocalRegistries | None = None
        self.registries: LocalRegistries | None = None
        self.tls: LocalCertificate | None = None
        adapters: dict[str, object] = {"clock": clock}
        # late-bound: the services are built just below, and the sites' stand-ins ask them for sites
        if options.registries is RegistryMode.SIMULATED:
            self.simulation = SimulatedConnectedRegistries(lambda: self.services.store.list_sites(), clock.now)  # noqa: PLW0108
            adapters["arm"] = self.simulation
            adapters["content_reader"] = SyntheticContentReader()
        else:
            adapters["content_reader"] = UnreadContentReader()
            api_key = self.settings.api_key
            # The sites' registries serve TLS, as connected registries do; what acrsync runs here trusts it.
            self.tls = local_certificate(options.data_dir / "registries" / "tls")
            adapters["probe"] = HttpManifestProbe(verify=str(self.tls.certificate))
            self.registries = LocalRegistries(
                options.data_dir / "registries",
                tls=self.tls,
                notifications=NotificationTarget(
                    notification_url(options.host, options.port), {"x-functions-key": api_key} if api_key else {}
                ),
                sites=lambda: self.services.store.list_sites(),  # noqa: PLW0108
                clock=clock.now,
                login_server=self.settings.registry,
            )
            self.simulation = self.registries
            adapters["arm"] = LocalConnectedRegistries(
                self.registries,
                lambda: self.services.store.list_sites(),  # noqa: PLW0108
                clock.now,
            )
        switch = self.simulation
        # The sites' clusters run what they hold, whichever registries the sites have; in real-registry
        # mode their pods name the site's loopback registry, and an agent per site reports them.
        self.workloads = SimulatedWorkloads(
            lambda site: self.services.store.list_site_syncs_for_site(site, page_size=100).items,
            switch.is_online,
            clock.now,
            registry_host=(lambda site: urlsplit(self._real_registries().endpoint(site)).netloc)
            if self.registries is not None
            else None,
        )
        self.site_agents: LocalSiteAgents | None = None
        self._agents_stop = threading.Event()
        adapters["workload_observer"] = adapters["cluster_health"] = self.workloads
        self.services: Services = bootstrap(self.settings, **adapters)
        self.runtime = LocalRuntime(
            self.services,
            RuntimeOptions(workers=options.workers, sweep_every=DEV_SWEEP_EVERY, observe_every=DEV_OBSERVE_EVERY),
        )
        self.imported: ImportReport | None = None

    def load_sites(self) -> SitesFile | None:
        """Read and import the sites file (all or nothing). Simulated sites get a simulated registry id;
        in real-registry mode every site gets its loopback registry (started here) as its endpoint."""
        if self.options.sites_file is None:
            return None
        simulated = self.options.registries is RegistryMode.SIMULATED
        # Short windows are for local runs, simulated or on loopback registries; never for Azure.
        parsed = load_sites_file(self.options.sites_file.read_text(), allow_short_windows=True)
        if simulated:
            parsed = replace(
                parsed,
                sites=[_simulated(site) for site in parsed.sites],
            )
            self.imported = import_sites(self.services, parsed)
            return parsed
        registries = self._real_registries()
        try:
            registries.start_parent()
            registries.login_server = self.settings.registry or parsed.registry
            parsed = replace(parsed, sites=[self._on_local_registry(site) for site in parsed.sites])
            self.imported = import_sites(self.services, parsed)
        except BaseException:
            registries.stop()
            raise
        return parsed

    def start(self, *, runtime: bool = True) -> None:
        """Install the services, start the registries' syncers (real-registry mode) and, unless
        ``runtime`` is false (tests that drive :meth:`LocalRuntime.process_available`), the runtime."""
        use_services(self.services)
        if self.registries is not None:
            try:
                self.registries.start_parent()
                self._adopt_stored_sites()
                self.registries.start()
            except BaseException:
                self.registries.stop()
                raise
            self.site_agents = self._start_site_agents()
            if runtime:
                threading.Thread(target=self._run_agents, name="acrsync-site-agents", daemon=True).start()
        if runtime:
            self.runtime.start()

    def _start_site_agents(self) -> LocalSiteAgents:
        registries = self._real_registries()
        return LocalSiteAgents(
            self.workloads,
            sites=lambda: [(site.name, registries.endpoint(site.name)) for site in self.services.store.list_sites()],
            is_online=registries.is_online,
            api_url=lambda: f"http://{self.options.host}:{self.options.port}",
            report_token=lambda site: issue_report_token(self.services, site),
            buffers=self.options.data_dir / "agents",
            ca_file=str(self.tls.certificate) if self.tls is not None else None,
            now=self.services.clock.now,
        )

    def _run_agents(self) -> None:
        while not self._agents_stop.wait(DEV_OBSERVE_EVERY.total_seconds()):
            if self.site_agents is not None:
                self.site_agents.run_once()

    def stop(self) -> None:
        self._agents_stop.set()
        try:
            self.runtime.stop()
        finally:
            if self.site_agents is not None:
                self.site_agents.stop()
            if self.registries is not None:
                self.registries.stop()
            self.services.close()
            use_services(None)

    def _real_registries(self) -> LocalRegistries:
        assert self.registries is not None  # real-registry mode only
        return self.registries

    def _on_local_registry(self, site: Site) -> Site:
        """The site as real-registry mode runs it: its loopback registry is its endpoint."""
        registries = self._real_registries()
        return replace(
            site,
            endpoint=registries.ensure_site(site.name),
            connected_registry=site.connected_registry or local_resource_id(registries.login_server, site.name),
            reporter=True,  # its agent reports what runs there (shared.local.site_agents)
        )

    def _adopt_stored_sites(self) -> None:
        """Sites already in the store (an earlier run, `acrsync sites import`) get a registry too."""
        stored = self.services.store.list_sites()
        changed = [moved for site in stored if (moved := self._on_local_registry(site)) != site]
        if changed:
            self.services.store.upsert_sites(changed)
            self.services.catalog.invalidate()


def _registry_of(sites_file: Path | None) -> dict[str, str]:
    """``{ACRSYNC_REGISTRY: <the sites file's registry>}``, or nothing when it names none (or does not
    load: load_sites then says why)."""
    if sites_file is None:
        return {}
    try:
        registry = load_sites_file(sites_file.read_text(), allow_short_windows=True).registry
    except (OSError, SitesFileError):
        return {}
    return {REGISTRY: registry} if registry else {}


def _simulated(site: Site) -> Site:
    """A site of the simulation: a simulated connected registry and Arc cluster unless it names real ones."""
    return replace(
        site,
        connected_registry=site.connected_registry or simulated_resource_id(site.name),
        cluster_id=site.cluster_id or simulated_cluster_id(site.name),
    )


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
