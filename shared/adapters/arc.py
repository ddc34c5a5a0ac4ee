"""Site health through ARM: the Arc connected cluster and its connected registry extension.

Two reads per site, with the app's identity (Reader on the clusters is enough):

- ``azure-mgmt-hybridkubernetes`` ``connected_cluster.get``: ``connectivityStatus`` (Connected,
  Connecting, Offline, Expired, AgentNotInstalled);
- ``azure-mgmt-kubernetesconfiguration-extensions`` ``extensions.list`` on
  ``Microsoft.Kubernetes/connectedClusters``: the extension of type
  ``Microsoft.ContainerRegistry.ConnectedRegistry`` with its provisioning state, version, statuses
  and error info. This split package is the maintained one (its 1.0.0 of 2026 targets API
  2025-03-01); the monolithic ``azure-mgmt-kubernetesconfiguration`` was last built in 2023.

Clients are built once per subscription and kept; errors are translated by
:func:`shared.adapters.arm.azure_errors`.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient
from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient

from shared.adapters.arm import DEFAULT_RETRY_TOTAL, ManagementClients, azure_errors, management_client_options
from shared.domain.model import Site
from shared.domain.workloads import (
    ClusterConnectivity,
    ExtensionHealth,
    ExtensionState,
    ObservationSource,
    RegistryCluster,
    SiteObservation,
)
from shared.errors import NotFound, UpstreamRejected

logger = logging.getLogger(__name__)

CONNECTED_REGISTRY_EXTENSION = "microsoft.containerregistry.connectedregistry"
_CLUSTER_ID = re.compile(
    r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.Kubernetes/connectedClusters/(?P<name>[^/]+)",
    re.IGNORECASE,
)
_RESOURCE_GROUP = re.compile(r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)", re.IGNORECASE)
MAX_EXTENSION_ERRORS = 5


class ArcHealthReader:
    """:class:`~shared.ports.ClusterHealthReader` on ARM."""

    def __init__(
        self,
        credential: Any,
        *,
        base_url: str | None = None,
        enforce_https: bool = True,
        retry_total: int | None = None,
    ) -> None:
        self._credential = credential
        self._base_url = base_url
        self._enforce_https = enforce_https
        self._retry_total = DEFAULT_RETRY_TOTAL if retry_total is None else retry_total
        self._clusters = ManagementClients(
            lambda sub: ConnectedKubernetesClient(self._credential, sub, **self._options())
        )
        self._extensions = ManagementClients(
            lambda sub: KubernetesConfigurationExtensionsMgmtClient(self._credential, sub, **self._options())
        )

    def read_health(self, site: Site, *, now: datetime) -> SiteObservation:
        """The cluster's connectivity and the connected registry extension's state.

        Raises:
            NotFound: the connected cluster is gone.
            UpstreamUnavailable, UpstreamRejected: ARM could not answer.
        """
        if site.cluster_id is None:
            raise UpstreamRejected(f"site {site.name} names no Arc connected cluster (cluster_id)")
        match = _CLUSTER_ID.fullmatch(site.cluster_id)
        if match is None:
            raise UpstreamRejected(f"site {site.name}: cluster_id is not an Arc connected cluster's ARM id")
        subscription, group, name = match["subscription"], match["group"], match["name"]
        options = {} if self._enforce_https else {"enforce_https": False}
        with azure_errors("ARM", "get connected cluster", site.cluster_id):
            cluster = self._clusters.get(subscription).connected_cluster.get(group, name, **options)
        connectivity = ClusterConnectivity.parse(_text(_properties(cluster, "connectivity_status")))
        try:
            with azure_errors("ARM", "list cluster extensions", site.cluster_id):
                extensions = list(
                    self._extensions.get(subscription).extensions.list(
                        group, "Microsoft.Kubernetes", "connectedClusters", name, **options
                    )
                )
        except NotFound:
            extensions = []
        return SiteObservation(
            site=site.name,
            source=ObservationSource.CONTAINER_INSIGHTS,
            observed_at=now,
            cluster_connectivity=connectivity,
            extension=_extension_health(extensions),
        )

    def list_registry_clusters(self, resource_group_id: str) -> list[RegistryCluster]:
        match = _RESOURCE_GROUP.fullmatch(resource_group_id.rstrip("/"))
        if match is None:
            raise UpstreamRejected("not a resource group's ARM id: /subscriptions/<id>/resourceGroups/<name>")
        subscription, group = match["subscription"], match["group"]
        options = {} if self._enforce_https else {"enforce_https": False}
        with azure_errors("ARM", "list connected clusters", resource_group_id):
            clusters = list(self._clusters.get(subscription).connected_cluster.list_by_resource_group(group, **options))
        found = []
        for cluster in clusters:
            name = str(getattr(cluster, "name", "") or "")
            cluster_id = str(getattr(cluster, "id", "") or "")
            with azure_errors("ARM", "list cluster extensions", cluster_id):
                extensions = self._extensions.get(subscription).extensions.list(
                    group, "Microsoft.Kubernetes", "connectedClusters", name, **options
                )
                registry = _registry_extension(extensions)
            if registry is not None and cluster_id:
                found.append(RegistryCluster(cluster_id, name, str(getattr(registry, "name", "") or "")))
        return found

    def close(self) -> None:
        self._clusters.close()
        self._extensions.close()

    def _options(self) -> dict[str, Any]:
        return management_client_options(self._base_url, self._retry_total)


def _registry_extension(extensions: Any) -> Any:
    """The connected registry extension among a cluster's, or ``None``."""
    return next(
        (
            e
            for e in extensions
            if (_text(_properties(e, "extension_type")) or "").lower() == CONNECTED_REGISTRY_EXTENSION
        ),
        None,
    )


def _extension_health(extensions: list[Any]) -> ExtensionHealth:
    found = _registry_extension(extensions)
    if found is None:
        return ExtensionHealth(ExtensionState.NOT_INSTALLED)
    errors = []
    error_info = _properties(found, "error_info")
    if error_info is not None:
        errors.append(_code_and_message(error_info))
    for status in _properties(found, "statuses") or []:
        if (_text(getattr(status, "level", None)) or "").lower() == "error":
            errors.append(_code_and_message(status))
    return ExtensionHealth(
        state=ExtensionState.parse(_text(_properties(found, "provisioning_state"))),
        version=_text(_properties(found, "current_version")) or _text(_properties(found, "version")),
        errors=tuple(error[:300] for error in errors if error)[:MAX_EXTENSION_ERRORS],
    )


def _code_and_message(detail: Any) -> str:
    code = _text(getattr(detail, "code", None)) or ""
    message = _text(getattr(detail, "message", None)) or ""
    return " ".join(f"{code} {message}".split())


def _properties(model: Any, name: str) -> Any:
    """A property of a resource model: the hybrid SDK models nest them under ``properties``."""
    properties = getattr(model, "properties", None)
    if properties is not None and hasattr(properties, name):
        return getattr(properties, name)
    return getattr(model, name, None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    inner = getattr(value, "value", value)
    return str(inner)
