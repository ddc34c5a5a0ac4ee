"""The command tree every command module registers on, its exit codes, and the composition root a
command reaches its adapters through.

Exit codes (stable; pipelines depend on them): 0 success (or ready), 1 failed, 2 timed out,
3 usage or configuration error, 4 API unreachable or unauthorized.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from shared.bootstrap import Services


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
sites_app = typer.Typer(help="Sites: list them, or import a sites file.", invoke_without_command=True)
app.add_typer(sites_app, name="sites")

# The services one run of the CLI was given (shared.cli.main(services=...)); None: built per command.
given_services: ContextVar[Services | None] = ContextVar("acrsync_cli_services", default=None)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"acrsync {version('acrsync')}")
        except PackageNotFoundError:
            typer.echo("acrsync (not installed as a package)")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Provable container releases to edge sites (ACR connected registries).

    Exit codes: 0 success, 1 failed, 2 timed out, 3 usage or configuration error,
    4 API unreachable or unauthorized.
    """


@contextmanager
def command_services() -> Iterator[Services]:
    """The composition root for one command: the services this run was given, else services built from
    the environment (lazily, as everywhere) and closed when the command ends.

    Raises:
        ConfigurationError: the environment's settings are missing or contradictory (exit code 3).
    """
    from shared.bootstrap import bootstrap

    given = given_services.get()
    if given is not None:
        yield given
        return
    services = bootstrap()
    try:
        yield services
    finally:
        services.close()
