"""One OCI registry process on loopback (Debian's ``docker-registry``): config, storage and log in a
folder of its own, a port kept across restarts when it is still free, notifications to the bridge."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from shared.errors import ConfigurationError
from shared.local.tls import LocalCertificate

log = logging.getLogger(__name__)

REGISTRY_BINARY = "docker-registry"
INSTALL_HINT = "apt-get install docker-registry"
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3


@dataclass(frozen=True)
class NotificationTarget:
    """Where a registry posts its notifications, with the headers to send (an API key: never logged)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class RegistryServer:
    """One ``docker-registry serve`` on loopback: config, storage and log under ``workdir``."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        notifications: NotificationTarget | None = None,
        tls: LocalCertificate | None = None,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.notifications = notifications
        self.tls = tls  # serve https with this certificate (the site registries), else plain http
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the registry and wait until its API answers (idempotent).

        Raises:
            ConfigurationError: ``docker-registry`` is not installed, or did not come up (with its log).
        """
        if self.running:
            return
        binary = shutil.which(REGISTRY_BINARY)
        if binary is None:
            raise ConfigurationError(f"--registries real needs {REGISTRY_BINARY}: run `{INSTALL_HINT}`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / "port"
        saved = port_file.read_text().strip() if port_file.is_file() else ""
        remembered = int(saved) if saved.isdigit() else 0
        last_log = ""
        for attempt in range(START_ATTEMPTS):
            port = remembered if attempt == 0 and remembered and _port_is_free(remembered) else _free_port()
            config = self.workdir / "config.yml"
            config.unlink(missing_ok=True)
            # Owner-only from the start: it may carry the API key the notifications present.
            with os.fdopen(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(yaml.safe_dump(self._config(port), sort_keys=False))
            log_path = self.workdir / "registry.log"
            self._log = log_path.open("wb")
            self.process = subprocess.Popen(  # noqa: S603 - a fixed binary and a config file we wrote
                [binary, "serve", str(config)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            self.port = port
            if self._wait_until_up():
                port_file.write_text(str(port))
                log.info("registry %s listening on %s", self.name, self.url)
                return
            exited = self.process.poll() is not None
            self.stop()
            last_log = log_path.read_text(errors="replace")[-4000:]
            if not exited or "address already in use" not in last_log:
                break
            log.warning("registry %s lost its port %s; retrying on another", self.name, port)
        raise ConfigurationError(f"registry {self.name} did not start; its log:\n{last_log}")

    def stop(self) -> None:
        """End the process (idempotent)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_until_up(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and self.running:
            verify = self.tls.client_context() if self.tls is not None else True
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/", timeout=0.5, verify=verify).status_code == 200:
                    return True
            time.sleep(0.05)
        return False

    def _config(self, port: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        }
        if self.tls is not None:
            config["http"]["tls"] = {"certificate": str(self.tls.certificate), "key": str(self.tls.key)}
        if self.notifications is not None:
            endpoint: dict[str, Any] = {
                "name": "acrsync",
                "url": self.notifications.url,
                "timeout": "5s",
                "threshold": 3,
                "backoff": "1s",
                # Blob pushes and pulls are no releases; manifest pushes and deletions are.
                "ignoredmediatypes": ["application/octet-stream"],
                "ignore": {"actions": ["pull"]},
            }
            if self.notifications.headers:
                endpoint["headers"] = {name: [value] for name, value in self.notifications.headers.items()}
            config["notifications"] = {"events": {"includereferences": True}, "endpoints": [endpoint]}
        return config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
