"""The ``acrsync`` command line.

Exit codes (stable; pipelines depend on them): 0 success, 1 failed, 2 timed out,
3 usage or configuration error, 4 API unreachable or unauthorized.
"""

from __future__ import annotations

import logging
import os
import sys
from enum import IntEnum
from pathlib import Path
from typing import Annotated

import typer

from shared.errors import ConfigurationError


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    TIMED_OUT = 2
    USAGE = 3
    UNREACHABLE = 4


app = typer.Typer(
    name="acrsync",
    help="Provable container releases to edge sites (ACR connected registries).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """Provable container releases to edge sites (ACR connected registries).

    Exit codes: 0 success, 1 failed, 2 timed out, 3 usage or configuration error,
    4 API unreachable or unauthorized.
    """


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (7071 is the Functions default).", min=1, max=65535)] = 7071,
    data_dir: Annotated[Path, typer.Option(help="Folder of the embedded SQLite data.")] = Path(".acrsync"),
) -> None:
    """Run the local orchestrator on the embedded SQLite default: API, event ingress, workers, sweeper."""
    import uvicorn

    from shared.bootstrap import bootstrap, use_services
    from shared.config import DATA_DIR, Settings
    from shared.runtime import LocalRuntime

    settings = Settings.from_environ({**os.environ, DATA_DIR: str(data_dir)})
    services = bootstrap(settings)
    use_services(services)
    runtime = LocalRuntime(services)
    base = f"http://{host}:{port}"
    typer.echo(
        "acrsync local orchestrator\n"
        f"  API          {base}/api/healthz  (OpenAPI: {base}/api/openapi.json)\n"
        f"  ingress      {base}/runtime/webhooks/eventgrid?functionName=on_acr_event\n"
        f"  data         {settings.sqlite_path} ({settings.describe()['store']} store and queue)\n"
        f"  sites        {len(services.store.list_sites())} registered\n"
        f"  workers      {runtime.options.workers} site-check workers, sweeper every "
        f"{int(runtime.options.sweep_every.total_seconds() // 60)} min\n"
        "  Ctrl-C stops it.",
        err=True,
    )
    from orchestrations.http_api import asgi_app

    runtime.start()
    try:
        uvicorn.run(asgi_app, host=host, port=port, log_level="info")
    finally:
        runtime.stop()
        services.close()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (usage errors map to 3, not Click's 2)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="acrsync", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return int(ExitCode.FAILED)
    except ConfigurationError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        return int(ExitCode.USAGE)
    except Exception as exc:
        # typer vendors click: its usage errors carry exit_code 2 and know how to show themselves.
        show = getattr(exc, "show", None)
        if callable(show) and getattr(exc, "exit_code", None) == 2:
            show()
            return int(ExitCode.USAGE)
        raise
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
