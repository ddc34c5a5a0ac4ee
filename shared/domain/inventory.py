"""What ARM says about a parent registry and its tokens: the values governance reads (preflight,
discovery, token expiry). Plain values; the ARM adapter builds them from SDK models."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.domain.observations import SyncScope, TokenPassword
from shared.errors import InvalidInput

PREMIUM_SKU = "Premium"

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_REGISTRY_ID = re.compile(
    rf"/subscriptions/{_GUID}/resourceGroups/[-\w.()]{{0,89}}[-\w()]"
    r"/providers/Microsoft\.ContainerRegistry/registries/[A-Za-z0-9]{5,50}",
    re.IGNORECASE,
)


def validate_registry_id(text: str) -> str:
    """Return ``text`` when it is a container registry's ARM id, else raise ``InvalidInput``.

    Raises:
        InvalidInput: ``INVALID_REGISTRY_ID``.
    """
    value = text.strip().rstrip("/") if isinstance(text, str) else ""
    if not _REGISTRY_ID.fullmatch(value):
        raise InvalidInput(
            "INVALID_REGISTRY_ID",
            "expected /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}"
            f"/providers/Microsoft.ContainerRegistry/registries/{{registry}}, got {text[:200]!r}",
        )
    return value


def registry_of(resource_id: str) -> str:
    """The registry part of a child resource id (``.../registries/{name}``), lower-cased for comparison."""
    lowered = resource_id.lower()
    marker = "/providers/microsoft.containerregistry/registries/"
    at = lowered.find(marker)
    if at < 0:
        return lowered
    rest = lowered[at + len(marker) :]
    return lowered[: at + len(marker)] + rest.split("/", 1)[0]


@dataclass(frozen=True)
class RegistryState:
    """A container registry as ``registries.get`` reports it."""

    resource_id: str
    name: str
    sku: str | None
    data_endpoint_enabled: bool
    login_server: str | None = None
    location: str | None = None

    @property
    def is_premium(self) -> bool:
        return (self.sku or "").lower() == PREMIUM_SKU.lower()


@dataclass(frozen=True)
class TokenState:
    """A registry token as ``tokens.get`` reports it (never a password value: ARM does not return them)."""

    token_id: str
    name: str
    status: str | None  # "enabled" or "disabled" (ARM's lower case); None when ARM says nothing
    passwords: tuple[TokenPassword, ...] = ()
    scope_map_id: str | None = None

    @property
    def enabled(self) -> bool:
        return (self.status or "").lower() == "enabled"

    @classmethod
    def from_sync_scope(cls, scope: SyncScope) -> TokenState:
        """The token as a sync-scope read describes it (readers that have no ``tokens.get`` of their own)."""
        return cls(
            token_id=scope.token_id,
            name=token_name(scope.token_id),
            status="enabled" if scope.token_enabled else "disabled",
            passwords=scope.passwords,
        )


def token_name(token_id: str) -> str:
    """A token's resource name: the last segment of its ARM id."""
    return token_id.rstrip("/").rsplit("/", 1)[-1]
