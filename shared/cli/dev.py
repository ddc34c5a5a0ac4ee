"""Local commands: `acrsync dev` (the whole product on one machine), `dev site offline|online`,
`push` (a realistic ImagePushed event for the local ingress), and `sites import`."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import secrets
import signal
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shared.cli.app import ExitCode, app, command_services, sites_app
from shared.cli.client import ApiClient
from shared.cli.output import Output, OutputOption, QueryOption

if TYPE_CHECKING:
    from shared.domain.model import Site

dev_app = typer.Typer(help="Run acrsync locally, and steer its simulated sites.", invoke_without_command=True)
site_app = typer.Typer(help="Take a simulated site offline or bring it back.")
dev_app.add_typer(site_app, name="site")
app.add_typer(dev_app, name="dev")

ApiUrl = Annotated[str | None, typer.Option("--api-url", help="The acrsync API (env ACRSYNC_API_URL).")]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="The API key (env ACRSYNC_API_KEY).")]


@dev_app.callback()
def dev(  # noqa: PLR0917 - typer maps each option to a parameter
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (7071 is the Functions default).", min=1, max=65535)] = 7071,
    sites: Annotated[
        Path | None, typer.Option("--sites", help="Sites file (default: ./sites.yaml if present).")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Folder of the embedded SQLite data.")] = Path(".acrsync"),
    registries: Annotated[
        str, typer.Option(help="simulated (default) or real (loopback OCI registries).")
    ] = "simulated",
) -> None:
    """Run the local orchestrator: API, event ingress, workers, sweeper, on the embedded SQLite default."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from orchestrations.api import create_app
    from orchestrations.api.dev import DevTools
    from shared.local.environment import DevEnvironment, DevOptions, RegistryMode

    if registries not in {mode.value for mode in RegistryMode}:
        raise typer.BadParameter("use simulated or real", param_hint="--registries")
    sites_file = sites if sites is not None else (Path("sites.yaml") if Path("sites.yaml").exists() else None)
    environment = DevEnvironment(
        DevOptions(host=host, port=port, data_dir=data_dir, sites_file=sites_file, registries=RegistryMode(registries))
    )
    parsed = environment.load_sites()
    asgi_app = create_app(
        dev_tools=DevTools(sites=environment.simulation, parent=environment.registries, workloads=environment.workloads)
    )
    base = f"http://{host}:{port}"
    site_count = len(parsed.sites) if parsed else len(environment.services.store.list_sites())
    served = environment.settings.registry or DEMO_REGISTRY
    example = _example_repository(parsed.sites if parsed else environment.services.store.list_sites())
    export_line = ""
    if port != DEFAULT_PORT or host != DEFAULT_HOST:
        export_line = (
            f"  export       ACRSYNC_API_URL={base}   (the CLI's default is http://{DEFAULT_HOST}:{DEFAULT_PORT})\n"
        )
    try_line = f"  try          acrsync push {example}:1.5.0\n               acrsync wait {served}/{example}:1.5.0\n"
    if environment.registries is not None:
        parent = environment.registries.start_parent().url
        try_line = f"  parent       {parent}: push here with any OCI client; sites copy it in their windows\n"
    typer.echo(
        "acrsync local orchestrator\n"
        f"  dashboard    {base}/\n"
        f"  API          {base}/api/releases  (OpenAPI: {base}/api/openapi.json)\n"
        f"  ingress      {base}/runtime/webhooks/eventgrid?functionName=on_acr_event\n"
        f"  data         {environment.settings.sqlite_path}\n"
        f"  sites        {site_count} from {sites_file or 'the store'} ({registries} connected registries)\n"
        f"  workers      {environment.runtime.options.workers} site-check workers, sweeper every minute\n"
        f"{export_line}{try_line}"
        "  Ctrl-C stops it (jobs in flight are abandoned, not lost).",
        err=True,
    )
    environment.start()
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again under the handler it found.
    # The default handler would end the process there, before the workers and the registry processes are
    # stopped; the interrupt handler makes SIGTERM unwind through the same cleanup as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        uvicorn.run(asgi_app, host=host, port=port, log_level="warning")
    finally:
        environment.stop()


DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7071
DEMO_REPOSITORY = "inspection/camera"


def _example_repository(sites: Sequence[Site]) -> str:
    """A repository some site approves, for the banner's examples: the demo's when a site approves it,
    else a site's first pattern made concrete."""
    if any(site.approves_repository(DEMO_REPOSITORY) for site in sites):
        return DEMO_REPOSITORY
    for site in sites:
        for pattern in site.repositories:
            concrete = pattern.replace("/*", "/app").replace("*", "app").replace("?", "a")
            if fnmatch.fnmatchcase(concrete, pattern) and "[" not in pattern:
                return concrete
    return DEMO_REPOSITORY


@site_app.command("offline")
def site_offline(name: str, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Take a simulated site offline: it stops syncing until it is back."""
    _set_site(name, "offline", api_url, api_key)


@site_app.command("online")
def site_online(name: str, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Bring a simulated site back online."""
    _set_site(name, "online", api_url, api_key)


@site_app.command("pull-error")
def site_pull_error(
    name: str,
    image: Annotated[
        str, typer.Argument(help="The image reference the site fails to pull, e.g. inspection/camera:9.9.9")
    ],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Make a simulated site fail to pull IMAGE (ImagePullBackOff) from its next observation on."""
    with ApiClient(api_url, api_key) as client:
        response = client.request("POST", f"/api/dev/sites/{name}/pull-errors", json={"image": image})
    if response.status_code != 200:
        typer.echo(f"error: {response.json().get('detail', response.text)}", err=True)
        raise typer.Exit(ExitCode.FAILED)
    typer.echo(f"{name} now fails to pull {image}", err=True)


def _set_site(name: str, state: str, api_url: str | None, api_key: str | None) -> None:
    with ApiClient(api_url, api_key) as client:
        response = client.request("POST", f"/api/dev/sites/{name}/{state}")
    if response.status_code != 200:
        typer.echo(f"error: {response.json().get('detail', response.text)}", err=True)
        raise typer.Exit(ExitCode.FAILED)
    typer.echo(f"{name} is {state}", err=True)


DEMO_REGISTRY = "contosoacr.azurecr.io"


def _served_registry_and_approval(client: ApiClient, repository: str) -> tuple[str | None, bool | None]:
    """The registry the instance serves (``None``: any) and whether any site approves ``repository``
    (``None`` when the sites could not be read)."""
    health = client.request("GET", "/api/healthz")
    served = health.json().get("registry") if health.status_code == 200 else None
    sites = client.request("GET", "/api/sites")
    if sites.status_code != 200:
        return served, None
    patterns = [pattern for site in sites.json().get("value", []) for pattern in site.get("repositories", [])]
    return served, any(fnmatch.fnmatchcase(repository, pattern) for pattern in patterns)


@app.command()
def push(  # noqa: PLR0917 - typer maps each option to a parameter
    image: Annotated[str, typer.Argument(help="repository:tag, e.g. inspection/camera:1.5.0")],
    registry: Annotated[str, typer.Option(help="The parent registry's login server.")] = "",
    digest: Annotated[str | None, typer.Option(help="The manifest digest (default: a new random one).")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    output: OutputOption = "json",
    query: QueryOption = None,
) -> None:
    """Post a realistic ImagePushed event (Event Grid schema) to the ingress, for the registry the
    instance serves (its /api/healthz) unless --registry names another; warns when no site approves
    the repository (the push then reaches no site)."""
    out = Output.from_options(output, query, False)
    repository, _, tag = image.rpartition(":")
    if not repository or not tag or "/" in tag:
        raise typer.BadParameter("use repository:tag", param_hint="IMAGE")
    with ApiClient(api_url, api_key) as client:
        served, approved = _served_registry_and_approval(client, repository)
    login_server = (registry or served or os.environ.get("ACRSYNC_REGISTRY") or DEMO_REGISTRY).lower()
    if approved is False:
        typer.echo(f"warning: no site approves {repository}: the release will reach no site", err=True)
    digest = digest or "sha256:" + hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    from shared.domain.acr_events import image_pushed_event
    from shared.local.names import registry_topic

    event = image_pushed_event(
        event_id=str(uuid.uuid4()),
        topic=registry_topic(login_server),
        registry=login_server,
        repository=repository,
        tag=tag,
        digest=digest,
        at=datetime.now(UTC),
        size=1574,
        user_agent="acrsync-push",
    )
    with ApiClient(api_url, api_key) as client:
        response = client.request(
            "POST",
            "/runtime/webhooks/eventgrid",
            params={"functionName": "on_acr_event"},
            content=json.dumps([event]),
            headers={"content-type": "application/json", "aeg-event-type": "Notification"},
        )
    if response.status_code != 200:
        typer.echo(f"error: {response.json().get('detail', response.text)}", err=True)
        raise typer.Exit(ExitCode.FAILED)
    [result] = response.json()["results"]
    out.emit(
        {
            "release_id": result["release_id"],
            "image": f"{login_server}/{repository}:{tag}",
            "digest": digest,
            "outcome": result["outcome"],
            "jobs_sent": result["jobs_sent"],
        }
    )


@sites_app.command("import")
def sites_import(
    path: Annotated[Path, typer.Argument(help="The sites file (YAML).", exists=True, dir_okay=False)],
) -> None:
    """Load a sites file into the configured store (SQLite locally, Table Storage in Azure); all or nothing."""
    from shared.services.sites_file import SitesFileError, import_sites, load_sites_file

    try:
        parsed = load_sites_file(path.read_text())
    except SitesFileError as exc:
        for line in exc.problems:
            typer.echo(f"{path}: {line}", err=True)
        typer.echo("nothing was imported", err=True)
        raise typer.Exit(ExitCode.USAGE) from exc
    with command_services() as services:
        report = import_sites(services, parsed)
    typer.echo(
        json.dumps(
            {
                "added": report.added,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "backfilled": report.backfilled,
            },
            indent=2,
        )
    )
