"""A loopback stand-in for the Kubernetes API, enough for the real ``kubernetes`` client's
``CoreV1Api.list_pod_for_all_namespaces``: ``GET /api/v1/pods`` answers a ``v1 PodList`` in the
documented shape. Tests set the pods (:meth:`KubeServer.set_pods`) and read the requests."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.local.site_agents import JsonHandler, pod_json
from tests.support.registry import LoopbackServer


def pod(
    name: str,
    image: str,
    image_id: str,
    *,
    namespace: str = "vision",
    owner: tuple[str, str] | None = ("ReplicaSet", "camera-7d9f"),
    waiting: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A ``v1 Pod`` with one container, running (or waiting with ``(reason, message)``)."""
    return pod_json(
        name,
        namespace=namespace,
        image=image,
        owner=owner[1] if owner else None,
        owner_kind=owner[0] if owner else "Deployment",
        image_id=image_id if waiting is None else "",
        waiting=waiting,
    )


class KubeServer(LoopbackServer):
    def __init__(self) -> None:
        self._pods: list[dict[str, Any]] = []
        self.requests: list[str] = []
        super().__init__(_Handler)

    def __enter__(self) -> KubeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_pods(self, pods: list[dict[str, Any]]) -> None:
        self._pods = list(pods)


class _Handler(JsonHandler):
    @property
    def kube(self) -> KubeServer:
        owner: KubeServer = self.server.owner  # type: ignore[attr-defined]
        return owner

    def do_GET(self) -> None:
        self.kube.requests.append(self.path)
        if urlsplit(self.path).path != "/api/v1/pods":
            self._send(
                404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            )
            return
        self._send(
            200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": self.kube._pods}
        )
