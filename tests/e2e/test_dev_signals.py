"""`acrsync dev` as a process: stopped with SIGTERM (a service manager, `kill`, a container runtime), it
cleans up as it does on Ctrl-C — in real-registry mode, no registry process outlives it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.azurite import free_port
from tests.support.process import acrsync_dev

ROOT = Path(__file__).resolve().parents[2]
SITES = """\
registry: contosoacr.azurecr.io
simulation:
  allow_short_windows: true
sites:
  - name: plant-01
    repositories: [inspection/*]
"""


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                found.add(int(entry.name))
                pending.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs Debian's docker-registry")
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_sigterm_stops_every_registry_process_as_ctrl_c_does(tmp_path: Path) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text(SITES)
    port = free_port()
    command, env = acrsync_dev(port, tmp_path / "data", sites, "--registries", "real")
    log = (tmp_path / "dev.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    registries: set[int] = set()
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, "acrsync dev to serve")
        registries = children(process.pid)
        assert len(registries) >= 2, (tmp_path / "dev.log").read_text()  # the parent and plant-01

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        wait_for(lambda: not any(alive(pid) for pid in registries), "the registry processes to end", timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        for pid in registries | children(process.pid):  # never leave one behind, whatever failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
    assert "Traceback" not in (tmp_path / "dev.log").read_text()
