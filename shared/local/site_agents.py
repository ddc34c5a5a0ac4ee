"""Real-registry mode's site reporters: an ``acrsync agent`` per site, the real one.

Each simulated site's cluster (:class:`~shared.local.workloads.SimulatedWorkloads`) is served as a
Kubernetes API on loopback (``GET /sites/<site>/api/v1/pods``, a ``v1 PodList`` in the documented shape),
and every round each site's agent runs against it (the ``kubernetes`` client), checks disconnected
pulls against the site's real loopback registry, and posts its report to the dev API over HTTP with
the site's report token. An offline site's uplink is down: its agent keeps its reports in its buffer
(under the data dir) and delivers them oldest first once the site is back.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.agent import AgentRun, AgentSettings, run_agent
from shared.domain.workloads import PullError, RunningContainer
from shared.errors import AcrSyncError
from shared.local.workloads import SimulatedWorkloads

logger = logging.getLogger(__name__)
# Where an offline site's agent sends: nothing listens on port 9 (discard) on loopback.
UNREACHABLE_API = "http://127.0.0.1:9"


def pod_list(containers: tuple[RunningContainer, ...], errors: tuple[PullError, ...]) -> dict[str, Any]:
    """The site's pods as a ``v1 PodList``: one pod per running container, one waiting per pull error."""
    items = [
        pod_json(
            c.pod,
            namespace=c.namespace,
            owner=c.workload_name,
            image=c.image,
            image_id=f"{c.image}@{c.digest}" if c.digest else "",
        )
        for c in containers
    ]
    items.extend(
        pod_json(f"pull-error-{index}", namespace="apps", image=error.image, waiting=(error.reason, error.message))
        for index, error in enumerate(errors)
    )
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}


def pod_json(
    name: str,
    *,
    namespace: str,
    image: str,
    owner: str | None = None,
    owner_kind: str = "Deployment",
    image_id: str = "",
    waiting: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A ``v1 Pod`` with one container ``app``: running, or waiting with ``(reason, message)``."""
    state: dict[str, Any] = (
        {"running": {}} if waiting is None else {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    )
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if owner:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner_kind, "name": owner, "uid": f"uid-{owner}", "controller": True}
        ]
    status = {
        "name": "app",
        "image": image,
        "imageID": image_id,
        "ready": waiting is None,
        "restartCount": 0,
        "state": state,
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": {"containerStatuses": [status]}}


class LocalSiteAgents:
    """The loopback Kubernetes API of every site, and one agent run per site per :meth:`run_once`."""

    def __init__(
        self,
        workloads: SimulatedWorkloads,
        *,
        sites: Callable[[], list[tuple[str, str]]],
        is_online: Callable[[str], bool],
        api_url: Callable[[], str],
        report_token: Callable[[str], str],
        buffers: Path,
        now: Callable[[], datetime],
        ca_file: str | None = None,
    ) -> None:
        self._ca_file = ca_file  # what signed the site registries' certificate
        self._workloads = workloads
        self._sites = sites  # (site, its registry endpoint)
        self._is_online = is_online
        self._api_url = api_url
        self._report_token = report_token
        self._buffers = buffers
        self._now = now
        handler = type("KubeHandler", (_KubeHandler,), {"agents": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def kube_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def pods(self, site: str) -> dict[str, Any]:
        now = self._now()
        return pod_list(self._workloads.containers(site, now=now), self._workloads.pull_errors(site, now=now))

    def run_once(self) -> dict[str, AgentRun]:
        """Every site's agent, once (a site whose run fails is logged and tried next round)."""
        runs = {}
        for site, registry in self._sites():
            settings = AgentSettings(
                site=site,
                api_url=self._api_url() if self._is_online(site) else UNREACHABLE_API,
                report_token=self._report_token(site),
                buffer_dir=self._buffers / site,
                registry=registry,
                ca_file=self._ca_file,
                kube_api=f"{self.kube_url}/sites/{site}",
            )
            try:
                runs[site] = run_agent(settings, now=self._now)
            except AcrSyncError as exc:
                logger.warning("site %s: agent run failed (%s)", site, type(exc).__name__)
        return runs

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """A loopback handler that answers JSON (the local Kubernetes API, and the tests' stand-ins)."""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s: %s", type(self).__name__, format % args)


class _KubeHandler(JsonHandler):
    agents: LocalSiteAgents

    def do_GET(self) -> None:
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 5 and parts[0] == "sites" and parts[2:] == ["api", "v1", "pods"]:
            self._send(200, self.agents.pods(parts[1]))
        else:
            self._send(
                404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            )
