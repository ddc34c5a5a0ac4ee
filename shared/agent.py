"""``acrsync agent``: the site's own reporter, for sites without Container Insights.

One run (a Kubernetes CronJob runs it every few minutes; ``deploy/agent-cronjob.yaml``):

1. lists the running pods and their containers' image IDs through the Kubernetes API (the
   ``kubernetes`` client: in-cluster config, a kubeconfig, or an API URL given);
2. checks, with the site's client token, that the local connected registry serves the digests the
   site should hold, the way a pull needs them (manifest by digest, then its config blob): a
   *disconnected-pull* check that needs no cloud. What the site should hold is what acrsync named
   in its answer to the previous report (kept beside the buffer); before any answer, the digests
   the site runs from that registry;
3. reads the local registry's TLS certificate expiry from the handshake;
4. writes the report into a bounded on-disk buffer, then sends every buffered report, oldest first,
   to ``POST /api/sites/{site}/reports`` with the site's report token. A report acrsync refuses
   (400: too old, malformed) is set aside in ``rejected/``; while the uplink is down they stay and
   the run exits with ``UNREACHABLE``. A resent report is harmless: acrsync answers ``duplicate``.

Nothing here calls Azure: the agent needs only outbound HTTPS to the acrsync API.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shared.adapters.oci import HttpManifestProbe
from shared.domain.observations import BasicCredentials
from shared.domain.workloads import (
    MAX_CONTAINERS_PER_POD,
    MAX_REPORT_CHECKS,
    MAX_REPORT_PODS,
    REPORT_SCHEMA,
    DisconnectedPull,
    digest_of,
    parse_image_reference,
)
from shared.errors import AcrSyncError, InvalidInput, UpstreamRejected, UpstreamUnavailable

logger = logging.getLogger(__name__)

DEFAULT_MAX_BUFFERED = 288  # a day of reports every five minutes
MAX_REJECTED = 50
EXPECTED_FILE = "expected.json"
REJECTED_DIR = "rejected"
SEND_TIMEOUT_SECONDS = 30.0
TLS_TIMEOUT_SECONDS = 10.0
PERMANENT_REFUSALS = frozenset({400, 403, 404, 409, 413, 422})


@dataclass(frozen=True)
class AgentSettings:
    """What one agent run needs; secrets are never shown."""

    site: str
    api_url: str
    report_token: str = field(repr=False)
    buffer_dir: Path
    registry: str | None = None  # the local connected registry, https://host:port
    registry_credentials: BasicCredentials | None = field(default=None, repr=False)
    ca_file: str | None = None  # the CA that signed the local registry's certificate
    kube_api: str | None = None  # a Kubernetes API URL (tests, or a run outside the cluster)
    max_buffered: int = DEFAULT_MAX_BUFFERED


@dataclass(frozen=True)
class AgentRun:
    """What one run did."""

    report_id: str
    pods: int
    checks: int
    disconnected_pull: DisconnectedPull
    sent: int
    duplicates: int
    rejected: int
    buffered: int  # still waiting for the uplink
    dropped: int  # the oldest, dropped to keep the buffer bounded
    uplink: bool  # whether the API took every buffered report


# -- what runs ------------------------------------------------------------------------------------


def list_pods(settings: AgentSettings) -> list[Any]:
    """The cluster's pods (``V1Pod``) through the Kubernetes API.

    Raises:
        UpstreamUnavailable: the Kubernetes API could not be reached or refused.
    """
    try:
        if settings.kube_api:
            configuration = client.Configuration()
            configuration.host = settings.kube_api
            api_client = client.ApiClient(configuration)
        else:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            api_client = client.ApiClient()
        with api_client:
            listing = client.CoreV1Api(api_client).list_pod_for_all_namespaces(watch=False, _request_timeout=30)
    except (ApiException, HTTPError, OSError, config.ConfigException) as exc:
        raise UpstreamUnavailable(f"the Kubernetes API did not list pods ({type(exc).__name__})") from exc
    return list(listing.items or [])


def pods_section(pods: Sequence[Any]) -> list[dict[str, Any]]:
    """The report's ``pods``: every pod with containers running or failing to pull their image."""
    section = []
    for pod in pods[:MAX_REPORT_PODS]:
        metadata, status = pod.metadata, pod.status
        statuses = list((status.container_statuses if status else None) or [])
        containers = []
        for container in statuses[:MAX_CONTAINERS_PER_POD]:
            state = container.state
            entry: dict[str, Any] = {
                "name": container.name,
                "image": container.image,
                "image_id": container.image_id or None,
            }
            if state is not None and state.running is not None:
                containers.append(entry)
            elif state is not None and state.waiting is not None and state.waiting.reason:
                containers.append(
                    {**entry, "waiting_reason": state.waiting.reason, "message": state.waiting.message or ""}
                )
        if not containers:
            continue
        owner = next((ref for ref in (metadata.owner_references or []) if ref.controller), None)
        section.append(
            {
                "namespace": metadata.namespace,
                "name": metadata.name,
                "controller": {"kind": owner.kind, "name": owner.name} if owner is not None else None,
                "containers": containers,
            }
        )
    return section


# -- the local registry -----------------------------------------------------------------------------


def tls_expiry(endpoint: str, *, ca_file: str | None = None) -> datetime | None:
    """The ``notAfter`` of the certificate the registry presents (read even when it does not verify:
    an expired certificate is exactly what this is for). ``None`` for plain http or no answer."""
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        return None
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate, not trusting the peer
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=TLS_TIMEOUT_SECONDS) as raw:
            with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
                der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        logger.warning("TLS certificate of %s not read (%s)", parts.hostname, type(exc).__name__)
        return None
    if not der:
        return None
    return x509.load_der_x509_certificate(der).not_valid_after_utc


def pull_checks(
    settings: AgentSettings, expected: Sequence[tuple[str, str]], probe: HttpManifestProbe
) -> list[dict[str, Any]]:
    """One disconnected-pull check per (repository, digest) the site should hold."""
    if not settings.registry:
        return []
    checks = []
    for repository, digest in expected[:MAX_REPORT_CHECKS]:
        try:
            check = probe.check_pull(settings.registry, repository, digest, credentials=settings.registry_credentials)
            result, detail = check.result.value, check.detail
        except UpstreamUnavailable as exc:
            result, detail = DisconnectedPull.FAILED.value, f"registry unreachable: {exc}"
        except UpstreamRejected as exc:
            result, detail = DisconnectedPull.FAILED.value, f"refused: {exc}"
        checks.append({"repository": repository, "digest": digest, "result": result, "detail": detail})
    return checks


def running_from_registry(settings: AgentSettings, pods: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """Before acrsync named what the site should hold: the digests running from the local registry."""
    host = urlsplit(settings.registry or "").netloc
    found: dict[tuple[str, str], None] = {}
    for pod in pods:
        for container in pod["containers"]:
            digest = digest_of(container.get("image_id"))
            try:
                reference = parse_image_reference(container["image"])
            except InvalidInput:
                continue
            if digest and host and reference.host == host:
                found[(reference.repository, digest)] = None
    return list(found)


# -- the buffer and the uplink ----------------------------------------------------------------------


class ReportBuffer:
    """Reports waiting for the uplink: one file each, named so that names sort oldest first."""

    def __init__(self, directory: Path, *, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def add(self, report: dict[str, Any]) -> int:
        """Keep ``report``; drop the oldest beyond the limit. Returns how many were dropped."""
        stamp = report["observed_at"].replace(":", "").replace("-", "").replace("+", "p")
        name = f"{stamp}-{report['id']}.json"
        temporary = self.directory / f".{name}.{secrets.token_hex(4)}.tmp"
        temporary.write_text(json.dumps(report, separators=(",", ":")))
        temporary.replace(self.directory / name)
        waiting = self.waiting()
        dropped = waiting[: max(len(waiting) - self.limit, 0)]
        for path in dropped:
            path.unlink(missing_ok=True)
        if dropped:
            logger.warning("report buffer full: dropped the %s oldest reports", len(dropped))
        return len(dropped)

    def waiting(self) -> list[Path]:
        return sorted(path for path in self.directory.glob("*.json") if path.name != EXPECTED_FILE)

    def set_aside(self, path: Path) -> None:
        rejected = self.directory / REJECTED_DIR
        rejected.mkdir(exist_ok=True)
        path.replace(rejected / path.name)
        for old in sorted(rejected.glob("*.json"))[:-MAX_REJECTED]:
            old.unlink(missing_ok=True)

    def expected(self) -> list[tuple[str, str]] | None:
        try:
            document = json.loads((self.directory / EXPECTED_FILE).read_text())
        except (OSError, ValueError):
            return None
        return [(str(item["repository"]), str(item["digest"])) for item in document if isinstance(item, dict)]

    def remember_expected(self, expected: list[dict[str, Any]]) -> None:
        (self.directory / EXPECTED_FILE).write_text(json.dumps(expected))


@dataclass
class _Sent:
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    uplink: bool = True


def send_buffered(settings: AgentSettings, buffer: ReportBuffer, post: Callable[[bytes], httpx.Response]) -> _Sent:
    """Send every buffered report, oldest first, until one cannot be delivered."""
    outcome = _Sent()
    for path in buffer.waiting():
        try:
            response = post(path.read_bytes())
        except httpx.HTTPError as exc:
            logger.warning("uplink down (%s): %s reports kept", type(exc).__name__, len(buffer.waiting()))
            outcome.uplink = False
            return outcome
        if response.status_code == 202:
            answer = response.json()
            outcome.sent += 1
            outcome.duplicates += bool(answer.get("duplicate"))
            if isinstance(answer.get("expected"), list):
                buffer.remember_expected(answer["expected"])
            path.unlink(missing_ok=True)
        elif response.status_code in PERMANENT_REFUSALS:
            logger.warning("report %s refused (%s): set aside", path.name, _problem(response))
            buffer.set_aside(path)
            outcome.rejected += 1
        else:  # 401 (a wrong token: fixed by an operator), 429, 5xx: keep it for the next run
            logger.warning("report not delivered (%s): %s reports kept", _problem(response), len(buffer.waiting()))
            outcome.uplink = False
            return outcome
    return outcome


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return f"HTTP {response.status_code} {body.get('code', '')}".strip()


# -- one run ----------------------------------------------------------------------------------------


def run_agent(settings: AgentSettings, *, now: Callable[[], datetime] | None = None) -> AgentRun:
    """Observe, buffer and send (see the module docstring).

    Raises:
        UpstreamUnavailable: the Kubernetes API could not be read (no report is made).
    """
    clock = now or (lambda: datetime.now(UTC))
    pods = pods_section(list_pods(settings))
    buffer = ReportBuffer(settings.buffer_dir, limit=settings.max_buffered)
    expected = buffer.expected()
    if expected is None:
        expected = running_from_registry(settings, pods)
    with HttpManifestProbe(verify=settings.ca_file or True) as probe:
        checks = pull_checks(settings, expected, probe)
    registry: dict[str, Any] | None = None
    if settings.registry:
        expires = tls_expiry(settings.registry, ca_file=settings.ca_file)
        registry = {"tls_expires_at": expires.isoformat() if expires else None, "checks": checks}
    report_id = str(uuid.uuid4())
    report = {
        "schema": REPORT_SCHEMA,
        "id": report_id,
        "site": settings.site,
        "observed_at": clock().isoformat(),
        "pods": pods,
        "registry": registry,
    }
    dropped = buffer.add(report)
    url = f"{settings.api_url.rstrip('/')}/api/sites/{settings.site}/reports"
    headers = {"Authorization": f"Bearer {settings.report_token}", "Content-Type": "application/json"}
    with httpx.Client(timeout=SEND_TIMEOUT_SECONDS, follow_redirects=False) as client:
        sent = send_buffered(settings, buffer, lambda body: client.post(url, content=body, headers=headers))
    results = {check["result"] for check in checks}
    pull = (
        DisconnectedPull.FAILED
        if DisconnectedPull.FAILED.value in results
        else DisconnectedPull.OK
        if checks
        else DisconnectedPull.UNKNOWN
    )
    return AgentRun(
        report_id=report_id,
        pods=len(pods),
        checks=len(checks),
        disconnected_pull=pull,
        sent=sent.sent,
        duplicates=sent.duplicates,
        rejected=sent.rejected,
        buffered=len(buffer.waiting()),
        dropped=dropped,
        uplink=sent.uplink,
    )


def settings_from_environ(env: dict[str, str], **given: Any) -> AgentSettings:
    """The agent's settings: flags first, then ``ACRSYNC_*`` variables (the CronJob sets these).

    Raises:
        InvalidInput: ``AGENT_NOT_CONFIGURED`` naming what is missing.
    """
    values = {
        "site": given.get("site") or env.get("ACRSYNC_SITE"),
        "api_url": given.get("api_url") or env.get("ACRSYNC_API_URL"),
        "report_token": given.get("report_token") or env.get("ACRSYNC_REPORT_TOKEN"),
        "buffer_dir": given.get("buffer_dir") or env.get("ACRSYNC_AGENT_BUFFER") or "/var/lib/acrsync-agent",
        "registry": given.get("registry") or env.get("ACRSYNC_LOCAL_REGISTRY"),
        "ca_file": given.get("ca_file") or env.get("ACRSYNC_LOCAL_REGISTRY_CA"),
        "kube_api": given.get("kube_api") or env.get("ACRSYNC_KUBE_API"),
    }
    missing = [name for name in ("site", "api_url", "report_token") if not values[name]]
    if missing:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in missing)
        raise InvalidInput("AGENT_NOT_CONFIGURED", f"the agent needs {flags} (or their ACRSYNC_* variables)")
    username = given.get("registry_username") or env.get("ACRSYNC_LOCAL_REGISTRY_USERNAME")
    password = given.get("registry_password") or env.get("ACRSYNC_LOCAL_REGISTRY_PASSWORD")
    credentials = BasicCredentials(username, password) if username and password else None
    limit = given.get("max_buffered") or int(env.get("ACRSYNC_AGENT_MAX_BUFFERED") or DEFAULT_MAX_BUFFERED)
    return AgentSettings(
        site=str(values["site"]),
        api_url=str(values["api_url"]),
        report_token=str(values["report_token"]),
        buffer_dir=Path(str(values["buffer_dir"])),
        registry=values["registry"] or None,
        registry_credentials=credentials,
        ca_file=values["ca_file"] or None,
        kube_api=values["kube_api"] or None,
        max_buffered=max(int(limit), 1),
    )


__all__ = ["AcrSyncError", "AgentRun", "AgentSettings", "run_agent", "settings_from_environ"]
