"""Local commands: `acrsync dev` (the whole product on one machine), `dev site offline|online`,
`push` (a realistic ImagePushed event for the local ingress), and `sites import`."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from shared.cli.app import ExitCode, app, command_services, sites_app
from shared.cli.client import ApiClient

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
    try_line = (
        "  try          acrsync push inspection/camera:1.5.0\n"
        "               acrsync wait contosoacr.azurecr.io/inspection/camera:1.5.0\n"
    )
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
        f"{try_line}"
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


@app.command()
def push(
    image: Annotated[str, typer.Argument(help="repository:tag, e.g. inspection/camera:1.5.0")],
    registry: Annotated[str, typer.Option(help="The parent registry's login server.")] = "",
    digest: Annotated[str | None, typer.Option(help="The manifest digest (default: a new random one).")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Post a realistic ImagePushed event (Event Grid schema) to the local ingress."""
    repository, _, tag = image.rpartition(":")
    if not repository or not tag or "/" in tag:
        raise typer.BadParameter("use repository:tag", param_hint="IMAGE")
    login_server = (registry or os.environ.get("ACRSYNC_REGISTRY") or "contosoacr.azurecr.io").lower()
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
    typer.echo(
        json.dumps(
            {
                "release_id": result["release_id"],
                "image": f"{login_server}/{repository}:{tag}",
                "digest": digest,
                "outcome": result["outcome"],
                "jobs_sent": result["jobs_sent"],
            },
            indent=2,
        )
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
