"""Governance commands: `preflight`, `sites drift` and `sites discover`.

* ``acrsync preflight --registry <ARM id> [--sites FILE]`` reads the parent registry and its connected
  registries from ARM and prints one line per check (see :mod:`shared.services.preflight`). Sites come from
  the configured store (SQLite locally, Table Storage in Azure), or from ``--sites FILE``.
* ``acrsync sites drift [--site S]`` asks the status API (``GET /api/sites/{site}/drift``) how each site's
  approved repositories compare with its sync token's scope map.
* ``acrsync sites discover --registry <ARM id> [-o sites.yaml]`` lists the registry's connected registries
  with their scope maps and drafts a sites file to review (to stdout without ``-o``).

ARM access (preflight, discover) comes from the composition root (:meth:`shared.bootstrap.Services.open_arm_inventory`):
``DefaultAzureCredential`` (``az login``, a managed identity, ...) against public Azure, or against
``ACRSYNC_ARM_ENDPOINT`` for a sovereign cloud. The hidden option ``--arm-endpoint URL`` points at another ARM
endpoint; plain ``http`` is allowed only on loopback.

Exit codes: 0 no check failed (no drift), 1 a check failed (drift found, or a registry that does not
exist), 3 usage or configuration error, 4 ARM (or the API) unreachable, unauthorized or refusing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from shared.cli.app import ExitCode, app, command_services, sites_app
from shared.cli.output import OnlyShowErrorsOption, Output, OutputOption, QueryOption, error
from shared.domain.inventory import validate_registry_id
from shared.domain.names import validate_site_name
from shared.errors import ConfigurationError, NotFound, UpstreamRejected, UpstreamUnavailable

RegistryOption = Annotated[
    str,
    typer.Option(
        "--registry",
        help="ARM id of the parent registry: /subscriptions/<id>/resourceGroups/<rg>/providers/"
        "Microsoft.ContainerRegistry/registries/<name>.",
    ),
]
ArmEndpointOption = Annotated[
    str | None,
    typer.Option(
        "--arm-endpoint",
        hidden=True,
        help="ARM endpoint (default: ACRSYNC_ARM_ENDPOINT, else public Azure); http only on loopback.",
    ),
]
ApiUrlOption = Annotated[str | None, typer.Option("--api-url", help="The acrsync API (env ACRSYNC_API_URL).")]
ApiKeyOption = Annotated[str | None, typer.Option("--api-key", help="The API key (env ACRSYNC_API_KEY).")]


@contextmanager
def arm_errors() -> Iterator[None]:
    """ARM trouble that ends the command: exit code 4 with ARM's reason."""
    try:
        yield
    except (UpstreamUnavailable, UpstreamRejected) as exc:
        error(f"ARM: {exc}")
        raise typer.Exit(ExitCode.UNREACHABLE) from exc


# -- preflight ----------------------------------------------------------------------------------


@app.command("preflight")
def preflight(  # noqa: PLR0917 - typer maps each option to a parameter
    registry: RegistryOption,
    sites: Annotated[
        Path | None,
        typer.Option("--sites", help="Check the sites of this file instead of the configured store.", dir_okay=False),
    ] = None,
    arm_endpoint: ArmEndpointOption = None,
    output: OutputOption = "table",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Check a parent registry and its sites' connected registries before relying on them.

    One line per check (check, target, result ok|warn|fail, detail). Exit code 0 when nothing failed,
    1 when a check failed, 3 for usage errors, 4 when ARM is unreachable or refuses access.
    """
    from shared.services.preflight import Result, exit_result
    from shared.services.preflight import preflight as run_preflight

    out = Output.from_options(output, query, only_show_errors)
    registry_id = validate_registry_id(registry)
    with command_services() as services:
        site_list = _load_sites(sites) if sites is not None else list(services.store.list_sites())
        runtimes = {runtime.site: runtime for runtime in services.store.list_site_runtimes()}
        with (
            arm_errors(),
            services.open_arm_inventory(arm_endpoint) as arm,
            services.open_cluster_health(arm_endpoint) as health,
        ):
            checks = run_preflight(
                arm,
                registry_id,
                site_list,
                now=services.clock.now(),
                horizon=timedelta(days=services.settings.token_expiry_horizon_days),
                health=health,
                runtimes=runtimes,
            )
    out.emit([check.view() for check in checks])
    counts = {result: sum(check.result is result for check in checks) for result in Result}
    out.note(f"{len(checks)} checks: {counts[Result.OK]} ok, {counts[Result.WARN]} warn, {counts[Result.FAIL]} fail")
    if exit_result(checks) is Result.FAIL:
        raise typer.Exit(ExitCode.FAILED)


def _load_sites(path: Path) -> list[Any]:
    from shared.services.sites_file import SitesFileError, load_sites_file

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return list(load_sites_file(text).sites)
    except SitesFileError as exc:
        for line in exc.problems:
            error(f"{path}: {line}")
        raise typer.Exit(ExitCode.USAGE) from exc


# -- sites discover -----------------------------------------------------------------------------


@sites_app.command("discover")
def sites_discover(  # noqa: PLR0917 - typer maps each option to a parameter
    registry: RegistryOption,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--output-file", "-o", help="Write the drafted sites file here (default: stdout).", dir_okay=False
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --output-file.")] = False,
    listing: Annotated[str, typer.Option("--format", help="Listing format: table or json.")] = "table",
    clusters: Annotated[
        str | None,
        typer.Option(
            "--clusters",
            metavar="RESOURCE_GROUP_ID",
            help="The resource group of the sites' Arc clusters: each site gets the cluster_id of the cluster "
            "running the connected registry extension under its name.",
        ),
    ] = None,
    arm_endpoint: ArmEndpointOption = None,
) -> None:
    """List the registry's connected registries with their scope maps, and draft a sites file to review.

    Names come from the connected registries, repositories from each sync token's scope map, schedule,
    window and TTL from its sync properties. The listing goes to stdout (stderr when the draft does).
    """
    from shared.cli.output import render
    from shared.services.discovery import discover, discovery_rows, discovery_yaml

    fmt = listing.strip().lower()
    if fmt not in {"table", "json"}:
        raise typer.BadParameter(f"{listing!r} is not one of table, json", param_hint="'--format'")
    registry_id = validate_registry_id(registry)
    if out_file is not None and out_file.exists() and not force:
        raise ConfigurationError(f"{out_file} exists: pass --force to overwrite it")
    with (
        command_services() as services,
        arm_errors(),
        services.open_arm_inventory(arm_endpoint) as arm,
        services.open_cluster_health(arm_endpoint) as health,
    ):
        try:
            arc = health.list_registry_clusters(clusters) if clusters is not None else None
        except NotFound as exc:
            error(f"no resource group {clusters} (or no read access to it)")
            raise typer.Exit(ExitCode.FAILED) from exc
        try:
            found = discover(arm, registry_id, clusters=arc)
        except NotFound as exc:
            error(f"no registry {registry_id} (or no read access to it)")
            raise typer.Exit(ExitCode.FAILED) from exc
    text = discovery_yaml(found, registry_id=registry_id, generated_at=datetime.now(UTC))
    rows = discovery_rows(found)
    if out_file is None:
        render(rows, fmt, stream=sys.stderr)
        sys.stdout.write(text)
        return
    render(rows, fmt)
    out_file.write_text(text)
    drafted = sum(1 for site in found.sites if site.entry is not None)
    typer.echo(f"wrote {out_file}: {drafted} of {len(found.sites)} connected registries as sites", err=True)


# -- sites drift --------------------------------------------------------------------------------


@sites_app.command("drift")
def sites_drift(  # noqa: PLR0917 - typer maps each option to a parameter
    site: Annotated[str | None, typer.Option("--site", help="Only this site (default: every site).")] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output: OutputOption = "table",
    query: QueryOption = None,
    only_show_errors: OnlyShowErrorsOption = False,
) -> None:
    """Compare each site's approved repositories with its sync token's scope map (through the API).

    Over-exposed: granted patterns nobody approved for the site. Missing: approved patterns the site can
    never receive. Exit code 1 when any site drifts.
    """
    from shared.cli.status import api_errors, open_client

    out = Output.from_options(output, query, only_show_errors)
    if site is not None:
        validate_site_name(site)
    with api_errors(), open_client(api_url, api_key) as client:
        names = [site] if site is not None else [s["name"] for s in client.get_json("/api/sites").get("value", [])]
        views = [client.get_json(f"/api/sites/{quote(name, safe='')}/drift") for name in names]
    if out.format == "table" and out.query is None:
        out.emit([_drift_row(view) for view in views])
    else:
        out.emit(views)
    drifting = [view["site"] for view in views if view.get("status") == "drift"]
    if drifting:
        out.note(f"drift at {len(drifting)} of {len(views)} sites: {', '.join(drifting)}")
        raise typer.Exit(ExitCode.FAILED)


def _drift_row(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": view.get("site"),
        "status": view.get("status"),
        "over_exposed": [gap.get("pattern") for gap in view.get("over_exposed") or []],
        "missing": [gap.get("pattern") for gap in view.get("missing") or []],
        "approved": view.get("approved"),
        "granted": view.get("granted"),
        "reason": view.get("reason"),
    }
