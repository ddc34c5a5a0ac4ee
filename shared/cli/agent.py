"""`acrsync agent`: the site's own reporter (one run; a Kubernetes CronJob repeats it).

It reports what runs at the site (pods and their image digests, from the Kubernetes API), whether
the local connected registry serves what the site should hold without the cloud, and the registry's
TLS expiry, to ``POST /api/sites/{site}/reports`` with the site's report token. Reports wait in a
bounded buffer on disk while the uplink is down and go out oldest first when it returns.
Exit 0 when every buffered report was delivered, 4 when the uplink is down (the reports are kept),
1 when the Kubernetes API could not be read, 3 for missing settings. See :mod:`shared.agent`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from shared.cli.app import ExitCode, app


@app.command("agent")
def agent(  # noqa: PLR0917 - typer maps each option to a parameter
    site: Annotated[str | None, typer.Option("--site", help="This site's name (ACRSYNC_SITE).")] = None,
    api_url: Annotated[str | None, typer.Option("--api-url", help="The acrsync API (ACRSYNC_API_URL).")] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", help="The local connected registry, https://host:port (ACRSYNC_LOCAL_REGISTRY)."),
    ] = None,
    ca_file: Annotated[
        str | None,
        typer.Option("--ca-file", help="CA of the local registry's certificate (ACRSYNC_LOCAL_REGISTRY_CA)."),
    ] = None,
    buffer_dir: Annotated[
        Path | None,
        typer.Option(
            "--buffer", help="Where reports wait for the uplink (ACRSYNC_AGENT_BUFFER; /var/lib/acrsync-agent)."
        ),
    ] = None,
    max_buffered: Annotated[
        int | None, typer.Option("--max-buffered", min=1, help="Reports kept while the uplink is down (288).")
    ] = None,
    kube_api: Annotated[
        str | None,
        typer.Option("--kube-api", help="A Kubernetes API URL (default: in-cluster config, else the kubeconfig)."),
    ] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="json or text.")] = "text",
) -> None:
    """Report what runs at this site, and whether its registry serves pulls on its own.

    Secrets come from the environment only: ACRSYNC_REPORT_TOKEN (from `acrsync sites report-token`),
    ACRSYNC_LOCAL_REGISTRY_USERNAME and ACRSYNC_LOCAL_REGISTRY_PASSWORD (the site's client token).
    """
    from shared.agent import run_agent, settings_from_environ
    from shared.errors import UpstreamUnavailable

    settings = settings_from_environ(
        dict(os.environ),
        site=site,
        api_url=api_url,
        registry=registry,
        ca_file=ca_file,
        buffer_dir=buffer_dir,
        max_buffered=max_buffered,
        kube_api=kube_api,
    )
    try:
        run = run_agent(settings)
    except UpstreamUnavailable as exc:
        typer.echo(f"error: {exc}; no report made", err=True)
        raise typer.Exit(ExitCode.FAILED) from None
    if output == "json":
        typer.echo(json.dumps({**run.__dict__, "disconnected_pull": run.disconnected_pull.value}, indent=2))
    else:
        typer.echo(
            f"report {run.report_id}: {run.pods} pods, disconnected pull {run.disconnected_pull.value} "
            f"({run.checks} digests); sent {run.sent} ({run.duplicates} already there), "
            f"{run.rejected} refused, {run.buffered} waiting, {run.dropped} dropped"
        )
    if not run.uplink:
        typer.echo("the uplink is down: the reports wait in the buffer for the next run", err=True)
        raise typer.Exit(ExitCode.UNREACHABLE)
