"""A loopback server process a test session starts and must stop (Azurite, docker-registry)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Self

STOP_TIMEOUT_S = 5.0


@dataclass
class ServerProcess:
    """A running server; :meth:`stop` ends it (idempotent). Subclasses name their log file."""

    log_name: ClassVar[str] = "server.log"

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    _logs: list[IO[bytes]] = field(default_factory=list, repr=False)

    def stderr_text(self) -> str:
        path = self.workdir / self.log_name
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        for handle in self._logs:
            handle.close()
        self._logs.clear()


def acrsync_dev(port: int, data_dir: Path, sites: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `acrsync dev` run as its own process (no ACRSYNC_* settings
    of the test run leak into it)."""
    import os
    import sys

    command = [
        sys.executable,
        "-c",
        "import sys; from shared.cli import main; sys.exit(main())",
        "dev",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--sites",
        str(sites),
        *extra,
    ]
    return command, {k: v for k, v in os.environ.items() if not k.startswith("ACRSYNC_")}
