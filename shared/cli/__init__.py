"""The ``acrsync`` command line.

Exit codes (stable; pipelines depend on them): 0 success (or ready), 1 failed, 2 timed out,
3 usage or configuration error, 4 API unreachable or unauthorized.
"""

from __future__ import annotations

import logging
import sys
from enum import IntEnum

import typer

from shared.cli.client import ApiUnreachable
from shared.errors import ConfigurationError, InvalidInput


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


@app.callback()
def root() -> None:
    """Provable container releases to edge sites (ACR connected registries).

    Exit codes: 0 success, 1 failed, 2 timed out, 3 usage or configuration error,
    4 API unreachable or unauthorized.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (usage errors map to 3, not Click's 2)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="acrsync", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return int(ExitCode.FAILED)
    except ApiUnreachable as exc:
        typer.echo(f"error: {exc}", err=True)
        return int(ExitCode.UNREACHABLE)
    except (ConfigurationError, InvalidInput) as exc:
        typer.echo(f"error: {exc}", err=True)
        return int(ExitCode.USAGE)
    except Exception as exc:
        # typer vendors click: its usage errors carry exit_code 2 and know how to show themselves.
        show = getattr(exc, "show", None)
        if callable(show) and getattr(exc, "exit_code", None) == 2:
            show()
            return int(ExitCode.USAGE)
        raise
    # Outside standalone mode typer *returns* the code of a typer.Exit raised by a command.
    return result if isinstance(result, int) and not isinstance(result, bool) else int(ExitCode.OK)


# Command modules register themselves on the apps above.
from shared.cli import demo as _demo  # noqa: E402,F401
from shared.cli import dev as _dev  # noqa: E402,F401
from shared.cli import governance as _governance  # noqa: E402,F401
from shared.cli import receipts as _receipts  # noqa: E402,F401
from shared.cli import report as _report  # noqa: E402,F401
from shared.cli import status as _status  # noqa: E402,F401
from shared.cli import wait as _wait  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
