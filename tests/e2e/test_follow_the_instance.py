"""`acrsync dev` and the CLI follow the instance they talk to: with a sites file for another registry
on a port other than the default, the banner's examples name that registry and a repository a site
approves and say how to point the CLI at it; `acrsync push` posts for the served registry, warns when
no site approves the repository, and the ingress refuses an event for another registry."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from shared.cli import main
from tests.support.azurite import free_port
from tests.support.process import acrsync_dev

ROOT = Path(__file__).resolve().parents[2]
SITES = """\
registry: myacr.azurecr.io
sites:
  - name: plant-01
    repositories: ["vision/*"]
"""


def test_the_banner_push_and_ingress_follow_the_served_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text(SITES)
    port = free_port()
    command, env = acrsync_dev(port, tmp_path / "data", sites)
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/api/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            banner = log_path.read_text()
            assert f"export       ACRSYNC_API_URL={base}" in banner
            assert "acrsync push vision/app:1.5.0" in banner
            assert "acrsync wait myacr.azurecr.io/vision/app:1.5.0" in banner
            assert httpx.get(f"{base}/api/healthz").json()["registry"] == "myacr.azurecr.io"

            monkeypatch.delenv("ACRSYNC_REGISTRY", raising=False)
            capsys.readouterr()
            assert main(["push", "vision/detector:2.3.0", "--api-url", base]) == 0
            pushed = capsys.readouterr()
            answer = json.loads(pushed.out)
            assert answer["image"] == "myacr.azurecr.io/vision/detector:2.3.0" and answer["jobs_sent"] == 1
            assert "warning" not in pushed.err

            assert main(["push", "vision/detector:2.3.9", "--api-url", base, "--query", "image", "-o", "tsv"]) == 0
            assert capsys.readouterr().out == "myacr.azurecr.io/vision/detector:2.3.9\n"

            assert main(["push", "retail/till:1.0.0", "--api-url", base]) == 0
            assert "no site approves retail/till" in capsys.readouterr().err

            code = main(["push", "vision/detector:2.3.1", "--registry", "contosoacr.azurecr.io", "--api-url", base])
            refused = capsys.readouterr().err
            assert (
                code == 1 and "this instance serves myacr.azurecr.io; the event is for contosoacr.azurecr.io" in refused
            )
            releases = httpx.get(f"{base}/api/releases").json()["value"]
            assert {r["registry"] for r in releases} == {"myacr.azurecr.io"}  # the refused event changed nothing
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    assert "Traceback" not in log_path.read_text()
