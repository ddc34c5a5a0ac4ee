"""Start Azurite's Table service for a test session: a real emulator on a free loopback port.

The emulator keeps everything in memory (``--inMemoryPersistence``) and runs with the given
directory as its working directory, so a test run leaves nothing behind in the repository. Azurite
3.37 refuses ``--location`` together with ``--inMemoryPersistence``, so the working directory is
what keeps any stray file (logs) out of the repository.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tests.support.process import ServerProcess

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_TABLE = REPO_ROOT / "node_modules" / ".bin" / "azurite-table"
# The Azurite development account: public, documented in the Azurite README and built into the SDKs.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STARTUP_TIMEOUT_S = 20.0
# Picking a free port and then handing it to another process is racy; a few attempts make a clash
# with a concurrently started server (parallel test runs) harmless.
START_ATTEMPTS = 3


def connection_string_for(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://{host}:{port}/{DEV_ACCOUNT};"
    )


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AzuriteHandle(ServerProcess):
    """A running Azurite table service; :meth:`stop` ends it (idempotent)."""

    log_name: ClassVar[str] = "azurite.stderr.log"

    @property
    def connection_string(self) -> str:
        return connection_string_for(self.port)

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"


# The name other helpers may use for the handle (``with start_azurite(path) as azurite: ...``).
Azurite = AzuriteHandle


def _accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _launch(workdir: Path, port: int) -> AzuriteHandle:
    stdout = (workdir / "azurite.stdout.log").open("wb")
    stderr = (workdir / "azurite.stderr.log").open("wb")
    command = [
        str(AZURITE_TABLE),
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ]
    process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    return AzuriteHandle(process=process, port=port, workdir=workdir, _logs=[stdout, stderr])


def start_azurite(workdir: Path | str) -> AzuriteHandle:
    """Start ``azurite-table`` on a free loopback port and wait until it accepts connections.

    Raises:
        RuntimeError: Azurite is not installed, exited early, or did not listen within the timeout;
            the message carries Azurite's stderr.
    """
    if not AZURITE_TABLE.exists():
        raise RuntimeError(
            f"Azurite is not installed ({AZURITE_TABLE} is missing); "
            f"run `npm install --no-audit --no-fund` in {REPO_ROOT}"
        )
    base = Path(workdir)
    last_error = ""
    for attempt in range(1, START_ATTEMPTS + 1):
        attempt_dir = base / f"attempt-{attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        handle = _launch(attempt_dir, free_port())
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if handle.process.poll() is not None:
                break  # exited early, most likely the port was taken in the meantime
            if _accepts_connections(handle.port):
                log.info("Azurite table service listening on 127.0.0.1:%s", handle.port)
                return handle
            time.sleep(0.1)
        exited = handle.process.poll() is not None
        handle.stop()
        last_error = handle.stderr_text()
        if not exited:
            raise RuntimeError(
                f"Azurite did not accept connections on port {handle.port} within {STARTUP_TIMEOUT_S:.0f} s; "
                f"stderr:\n{last_error}"
            )
        if "EADDRINUSE" not in last_error:
            raise RuntimeError(f"Azurite exited during start-up; stderr:\n{last_error}")
        log.warning("Azurite exited during start-up (attempt %s); retrying on another port", attempt)
    raise RuntimeError(f"Azurite exited during start-up {START_ATTEMPTS} times; last stderr:\n{last_error}")
