"""What runs at a site, from the cloud with no agent: Azure Monitor Container Insights on the site's
Arc-enabled cluster, queried with ``azure-monitor-query``'s ``LogsQueryClient`` and the app's identity.

One KQL query per site (:data:`SITE_QUERY`), in workspace context (``query_workspace`` on the site's
``log_analytics_workspace_id``, filtered to its cluster when ``cluster_id`` is set: a fleet often
shares one workspace) or in resource context (``query_resource`` on the cluster's ARM id):

- running containers: the newest ``KubePodInventory`` row per ``ContainerID`` (namespace, pod,
  controller, ``ContainerStatus``, ``ContainerStatusReason``) joined to the newest
  ``ContainerInventory`` row on ``ContainerID`` (``Repository``, ``Image``, ``ImageTag`` and
  ``ImageID``, the digest the kubelet reports);
- pull errors: containers waiting with an image-pull reason (``ErrImagePull``,
  ``ImagePullBackOff``...) and Warning ``KubeEvents`` (``Failed``, ``BackOff``...) about an image
  (Container Insights collects Warning events by default; Normal ones only with
  ``collect_all_kube_events``).

A partial result (the query hit a limit) is used as far as it goes and logged; throttling and
server errors are transient. Needs the ``azuremonitor-containers`` extension on the cluster and
Log Analytics Reader (workspace context) or Reader on the cluster (resource context) for the app.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from azure.monitor.query import LogsQueryClient, LogsQueryStatus

from shared.adapters.arm import azure_errors
from shared.domain.model import Site
from shared.domain.workloads import (
    PULL_FAILURE_EVENT_REASONS,
    PULL_FAILURE_REASONS,
    ObservationSource,
    PullError,
    RunningContainer,
    SiteObservation,
)
from shared.errors import UpstreamRejected

logger = logging.getLogger(__name__)

PUBLIC_ENDPOINT = "https://api.loganalytics.io"
INVENTORY_WINDOW = timedelta(minutes=30)  # Container Insights sends inventory every minute
EVENTS_WINDOW = timedelta(hours=24)
SERVER_TIMEOUT_SECONDS = 60
# A sweep observes every site: a throttled workspace is tried again at the next sweep, not for minutes now.
DEFAULT_RETRY_TOTAL = 2
MAX_ROWS = 10_000
_IMAGE_IN_MESSAGE = re.compile(r'image "([^"]{1,512})"')

# {cluster_filter} is empty, or `| where _ResourceId =~ "<cluster id>"`: only ever a validated ARM id.
SITE_QUERY = """
let since = ago({inventory_minutes}m);
let pods = KubePodInventory
| where TimeGenerated > since {cluster_filter}
| summarize arg_max(TimeGenerated, *) by ContainerID
| project ContainerID, Namespace, Pod = Name, ContainerName, ControllerKind, ControllerName,
          ContainerStatus, ContainerStatusReason;
let images = ContainerInventory
| where TimeGenerated > since {cluster_filter}
| summarize arg_max(TimeGenerated, Repository, Image, ImageTag, ImageID) by ContainerID;
let containers = pods
| join kind=leftouter images on ContainerID
| project Kind = "container", Namespace, Pod, ContainerName, ControllerKind, ControllerName,
          ContainerStatus, Reason = ContainerStatusReason, Repository, Image, ImageTag, ImageID,
          Message = "", Count = 1, FirstSeen = datetime(null), LastSeen = datetime(null);
let failures = KubeEvents
| where TimeGenerated > ago({events_hours}h) {cluster_filter}
| where ObjectKind == "Pod" and KubeEventType == "Warning"
| where Reason in ({event_reasons}) and Message has "image"
| summarize arg_max(LastSeen, Message), Count = sum(Count), FirstSeen = min(FirstSeen) by Namespace, Pod = Name, Reason
| project Kind = "event", Namespace, Pod, ContainerName = "", ControllerKind = "", ControllerName = "",
          ContainerStatus = "", Reason, Repository = "", Image = "", ImageTag = "", ImageID = "",
          Message, Count, FirstSeen, LastSeen;
union containers, failures
| take {max_rows}
"""


def site_query(site: Site) -> str:
    """The KQL for one site (see :data:`SITE_QUERY`)."""
    cluster_filter = ""
    if site.cluster_id and site.log_analytics_workspace_id:
        cluster_filter = '| where _ResourceId =~ "' + site.cluster_id.replace('"', "").replace("\\", "") + '"'
    return SITE_QUERY.format(
        inventory_minutes=int(INVENTORY_WINDOW.total_seconds() // 60),
        events_hours=int(EVENTS_WINDOW.total_seconds() // 3600),
        cluster_filter=cluster_filter,
        event_reasons=", ".join(f'"{reason}"' for reason in sorted(PULL_FAILURE_EVENT_REASONS)),
        max_rows=MAX_ROWS,
    ).strip()


class ContainerInsightsObserver:
    """:class:`~shared.ports.WorkloadObserver` on Log Analytics."""

    def __init__(
        self,
        credential: Any,
        *,
        endpoint: str = PUBLIC_ENDPOINT,
        enforce_https: bool = True,
        retry_total: int = DEFAULT_RETRY_TOTAL,
    ) -> None:
        # The token's audience stays Log Analytics' even when the endpoint is another (a test server).
        self._client = LogsQueryClient(
            credential, endpoint=endpoint, audience=PUBLIC_ENDPOINT, retry_total=retry_total, retry_backoff_max=10
        )
        self._enforce_https = enforce_https
        self.queries = 0  # queries sent by this process: the sweep reports what it cost

    def observe(self, site: Site, *, now: datetime) -> SiteObservation:
        """What ran at the site in the last :data:`INVENTORY_WINDOW`, and its pull errors.

        Raises:
            UpstreamUnavailable: throttled, server errors, unreachable.
            UpstreamRejected: the site names no workspace or cluster, or the query was refused.
        """
        query = site_query(site)
        options: dict[str, Any] = {"timespan": EVENTS_WINDOW, "server_timeout": SERVER_TIMEOUT_SECONDS}
        if not self._enforce_https:
            options["enforce_https"] = False
        target = site.log_analytics_workspace_id or site.cluster_id
        if target is None:
            raise UpstreamRejected(f"site {site.name} names no Log Analytics workspace or Arc cluster")
        self.queries += 1
        with azure_errors("Log Analytics", "query", target):
            if site.log_analytics_workspace_id:
                result = self._client.query_workspace(site.log_analytics_workspace_id, query, **options)
            else:
                result = self._client.query_resource(target, query, **options)
        if result.status == LogsQueryStatus.SUCCESS:
            tables = result.tables
        else:
            error = getattr(result, "partial_error", None)
            logger.warning(
                "Container Insights of site %s: partial result (%s)", site.name, getattr(error, "code", "unknown")
            )
            tables = result.partial_data
        rows = [row for table in tables for row in _rows(table)]
        containers, errors = _read_rows(rows, now)
        return SiteObservation(
            site=site.name,
            source=ObservationSource.CONTAINER_INSIGHTS,
            observed_at=now,
            containers=tuple(containers),
            pull_errors=tuple(errors),
        )

    def close(self) -> None:
        self._client.close()


def _rows(table: Any) -> Iterable[dict[str, Any]]:
    columns = [getattr(column, "name", column) for column in table.columns]
    for row in table.rows:
        yield {name: row[index] for index, name in enumerate(columns)}


def _read_rows(rows: list[dict[str, Any]], now: datetime) -> tuple[list[RunningContainer], list[PullError]]:
    containers: list[RunningContainer] = []
    errors: dict[tuple[str, str], PullError] = {}
    source = ObservationSource.CONTAINER_INSIGHTS
    for row in rows:
        namespace, pod = str(row.get("Namespace") or ""), str(row.get("Pod") or "")
        reason = str(row.get("Reason") or "")
        if row.get("Kind") == "event":
            match = _IMAGE_IN_MESSAGE.search(str(row.get("Message") or ""))
            if match is None or reason not in PULL_FAILURE_EVENT_REASONS:
                continue
            first = _time(row.get("FirstSeen")) or now
            last = _time(row.get("LastSeen")) or now
            error = PullError(
                match[1], reason, str(row.get("Message"))[:300], int(row.get("Count") or 1), first, last, source
            )
            known = errors.get(error.key)
            errors[error.key] = error if known is None else known.merged(error)
            continue
        image = _image_reference(row)
        if image is None:
            continue
        if reason in PULL_FAILURE_REASONS:
            known = errors.get((image, reason))
            errors[(image, reason)] = (
                PullError(image, reason, f"{namespace}/{pod}: {reason}", 1, now, now, source)
                if known is None
                else known.merged(PullError(image, reason, known.message, known.count + 1, now, now, source))
            )
            continue
        if str(row.get("ContainerStatus") or "").lower() != "running":
            continue
        name = str(row.get("ContainerName") or "").rsplit("/", 1)[-1]  # "poduid/containername"
        digest = str(row.get("ImageID") or "") or None
        containers.append(
            RunningContainer(
                namespace=namespace,
                pod=pod,
                container=name,
                image=image,
                digest=digest if digest and digest.startswith("sha256:") else None,
                workload_kind=str(row.get("ControllerKind") or "") or None,
                workload_name=str(row.get("ControllerName") or "") or None,
            )
        )
    return containers, list(errors.values())


def _image_reference(row: dict[str, Any]) -> str | None:
    """``Repository`` (the registry host), ``Image`` (the repository) and ``ImageTag`` as one reference."""
    image = str(row.get("Image") or "")
    if not image:
        return None
    host = str(row.get("Repository") or "")
    tag = str(row.get("ImageTag") or "")
    reference = f"{host}/{image}" if host else image
    return f"{reference}:{tag}" if tag else reference


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
