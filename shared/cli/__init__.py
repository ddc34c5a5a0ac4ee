"""The ``acrsync`` command line: :func:`main`, and the command modules registered on :mod:`shared.cli.app`.

Exit codes (stable; pipelines depend on them): 0 success (or ready), 1 failed, 2 timed out,
3 usage or configuration error, 4 API unreachable or unauthorized.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import typer

# The command modules register their commands on shared.cli.app when imported.
from shared.cli import agent, demo, dev, governance, receipts, report, status, wait  # noqa: F401
from shared.cli.app import ExitCode, app, given_services
from shared.cli.client import ApiUnreachable
from shared.errors import ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from shared.bootstrap import Services

__all__ = ["ExitCode", "app", "main"]


def main(argv: list[str] | None = None, *, services: Services | None = None) -> int:
    """Run the CLI and return its exit code (usage errors map to 3, not Click's 2).

    Args:
        argv: the arguments (default: the process's).
        services: what commands that need adapters use (tests pass theirs); by default each such
            command builds them from the environment.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    token = given_services.set(services)
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
    finally:
        given_services.reset(token)
    # Outside standalone mode typer *returns* the code of a typer.Exit raised by a command.
    return result if isinstance(result, int) and not isinstance(result, bool) else int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
