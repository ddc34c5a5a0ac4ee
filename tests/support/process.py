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
