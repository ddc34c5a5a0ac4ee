"""The :class:`~shared.ports.ConnectedRegistryReader` port on Azure Resource Manager
(``azure-mgmt-containerregistry`` 15, ARM ``api-version`` 2025-11-01).

Clients: a management client is bound to one subscription, while the ids acrsync follows
(connected registry -> sync token -> scope map) may live in different subscriptions. The reader
parses the subscription from every id and keeps one client per subscription, built on first use.
Azure SDK clients are safe to share between threads, so one client serves every worker thread.

Models: the SDK's models are "hybrid" (attribute access with flattened ``properties``, plus a
mapping keyed by wire names). A value the SDK cannot deserialize is handed back as the raw wire
string instead of raising, so every datetime and duration is normalised here (``isodate``), and
scope-map fields are read through ``.properties`` because the flattened ``type`` is shadowed by
the resource type.

Errors: azure-core exceptions are translated in one place (:meth:`ArmConnectedRegistryReader._errors`).
Messages name the operation and the resource id (ids are not secret), never a token.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import isodate
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

from shared.domain.inventory import RegistryState, TokenState
from shared.domain.observations import (
    ConnectedRegistryState,
    ConnectionState,
    StatusDetail,
    SyncAuth,
    SyncResult,
    SyncScope,
    TokenPassword,
)
from shared.errors import NotFound, UpstreamRejected, UpstreamUnavailable

__all__ = ["ArmConnectedRegistryReader"]

logger = logging.getLogger(__name__)

# The SDK's default is 10 retries with exponential backoff up to 120 s each: minutes inside one
# Functions invocation. A few quick retries absorb blips; longer trouble is the caller's to retry
# (Service Bus redelivers the job).
DEFAULT_RETRY_TOTAL = 3
# azure-core sleeps for whatever Retry-After says, without a cap. ARM throttling can ask for
# minutes; sleeping that long inside an invocation risks the Functions timeout (230 s for HTTP),
# so a longer Retry-After ends the call with UpstreamUnavailable and the caller retries later.
MAX_RETRY_AFTER_SECONDS = 30.0
# The requests transport waits 300 s to connect and 300 s per read by default.
CONNECTION_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 30.0
# Upper bound on one operation including its retries (azure-core's absolute ``timeout``).
OPERATION_TIMEOUT_SECONDS = 90

_MAX_ERROR_TEXT = 300

_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Segment names are matched case-insensitively (ARM treats them so); values follow ARM's naming
# rules: resource groups 1-90 of word characters, '-', '.', '(' and ')' (not ending in '.'),
# registries 5-50 alphanumerics, child resources alphanumerics, '-' and '_'.
_ID_PATTERN = re.compile(
    rf"/subscriptions/(?P<subscription>{_GUID})"
    r"/resourceGroups/(?P<group>[-\w.()]{0,89}[-\w()])"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<registry>[A-Za-z0-9]{5,50})"
    r"/(?P<kind>connectedRegistries|tokens|scopeMaps)/(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,49})",
    re.IGNORECASE,
)
# A registry itself (the parent of connected registries, tokens and scope maps).
_REGISTRY_ID_PATTERN = re.compile(
    rf"/subscriptions/(?P<subscription>{_GUID})"
    r"/resourceGroups/(?P<group>[-\w.()]{0,89}[-\w()])"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<registry>[A-Za-z0-9]{5,50})",
    re.IGNORECASE,
)
_KIND_CONNECTED_REGISTRY = "connectedRegistries"
_KIND_TOKEN = "tokens"  # noqa: S105 - an ARM resource type, not a secret
_KIND_SCOPE_MAP = "scopeMaps"

_READ_ACTION_PREFIX = "repositories/"
_READ_ACTION_SUFFIX = "/content/read"

# Statuses worth retrying later: 401/403 while a fresh role assignment propagates (30-60 s),
# 408 and 429 by definition, 5xx.
_RETRYABLE_STATUS = frozenset({401, 403, 408, 429})


@dataclass(frozen=True)
class _ArmId:
    subscription_id: str
    resource_group: str
    registry: str
    name: str


def _parse_registry_id(resource_id: str) -> _ArmId:
    match = _REGISTRY_ID_PATTERN.fullmatch(resource_id) if isinstance(resource_id, str) else None
    if match is None:
        shown = repr(resource_id)[:_MAX_ERROR_TEXT]
        raise UpstreamRejected(
            "INVALID_RESOURCE_ID: expected /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}"
            f"/providers/Microsoft.ContainerRegistry/registries/{{registry}}, got {shown}"
        )
    return _ArmId(match["subscription"], match["group"], match["registry"], match["registry"])


def _parse_id(resource_id: str, kind: str) -> _ArmId:
    match = _ID_PATTERN.fullmatch(resource_id) if isinstance(resource_id, str) else None
    if match is None or match["kind"].lower() != kind.lower():
        shown = repr(resource_id)[:_MAX_ERROR_TEXT]
        raise UpstreamRejected(
            "INVALID_RESOURCE_ID: expected /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}"
            f"/providers/Microsoft.ContainerRegistry/registries/{{registry}}/{kind}/{{name}}, got {shown}"
        )
    return _ArmId(match["subscription"], match["group"], match["registry"], match["name"])


class BoundedRetryPolicy(RetryPolicy[HttpRequest, HttpResponse]):
    """azure-core's retry policy, except that a Retry-After above a bound is not waited for."""

    def __init__(self, *, max_retry_after: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_retry_after = max_retry_after

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self._max_retry_after:
            return False
        return bool(super().is_retry(settings, response))


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ArmConnectedRegistryReader:
    """Reads connected registries, sync tokens and scope maps through ARM; for governance
    (:class:`~shared.ports.RegistryInventory`) also the registry itself, its connected registries (every
    page of the list) and single tokens.

    Args:
        credential: any Entra ID token credential (managed identity in Azure); it needs read access
            (e.g. the Reader role) on the registries.
        base_url: the ARM endpoint; the public cloud's when ``None``. For a sovereign cloud pass its
            ARM endpoint: the token scope follows it.
        enforce_https: ``False`` only for a loopback test server over plain http.
        clock: the source of ``observed_at``; UTC now by default.
        retry_total: retries of one request inside the SDK (``DEFAULT_RETRY_TOTAL`` when ``None``).

    Raises:
        UpstreamRejected: ``base_url`` is not an http(s) URL, or is plain http while ``enforce_https``.
    """

    def __init__(
        self,
        credential: TokenCredential,
        *,
        base_url: str | None = None,
        enforce_https: bool = True,
        clock: Callable[[], datetime] | None = None,
        retry_total: int | None = None,
    ) -> None:
        if base_url is not None:
            scheme = urlsplit(base_url).scheme.lower()
            if scheme not in ("http", "https") or (scheme == "http" and enforce_https):
                # Checked here because the SDK would only fail at the first call, with an error
                # that looks transient (ServiceRequestError) although no retry can fix it.
                raise UpstreamRejected(
                    f"INVALID_ARM_ENDPOINT: {base_url!r} must be an https URL"
                    " (plain http only with enforce_https=False, for a loopback test server)"
                )
        self._credential = credential
        self._base_url = base_url.rstrip("/") if base_url else None
        self._enforce_https = enforce_https
        self._clock = clock or _utc_now
        self._retry_total = DEFAULT_RETRY_TOTAL if retry_total is None else retry_total
        self._clients = ManagementClients(self._new_client)

    # -- port ----------------------------------------------------------------------------------
    def get_connected_registry(self, resource_id: str) -> ConnectedRegistryState:
        arm_id = _parse_id(resource_id, _KIND_CONNECTED_REGISTRY)
        client = self._client(arm_id.subscription_id)
        with self._errors("connected_registries.get", resource_id):
            registry = client.connected_registries.get(
                arm_id.resource_group, arm_id.registry, arm_id.name, **self._operation_options()
            )
        return _to_state(resource_id, arm_id.name, registry, self._clock())

    def get_sync_scope(self, token_id: str) -> SyncScope:
        token_arm_id = _parse_id(token_id, _KIND_TOKEN)
        client = self._client(token_arm_id.subscription_id)
        with self._errors("tokens.get", token_id):
            token = client.tokens.get(
                token_arm_id.resource_group, token_arm_id.registry, token_arm_id.name, **self._operation_options()
            )
        properties = token.properties
        status = _text(_field(properties, "status")) or ""
        passwords = _passwords(token_id, _field(_field(properties, "credentials"), "passwords"))
        scope_map_id = _text(_field(properties, "scope_map_id"))

        patterns: tuple[str, ...] = ()
        if scope_map_id:
            map_arm_id = _parse_id(scope_map_id, _KIND_SCOPE_MAP)
            map_client = self._client(map_arm_id.subscription_id)
            with self._errors("scope_maps.get", scope_map_id):
                scope_map = map_client.scope_maps.get(
                    map_arm_id.resource_group, map_arm_id.registry, map_arm_id.name, **self._operation_options()
                )
            # Through .properties: on ScopeMap the flattened attributes include ``type``, which the
            # resource's own ``type`` shadows; reading every field the same way avoids the trap.
            patterns = _repository_patterns(_field(scope_map.properties, "actions"))
        else:
            logger.warning("ARM token %s has no scopeMapId; it lets the site sync no repository", token_id)

        return SyncScope(
            token_id=token_id,
            # Only what ARM states counts: a token is enabled when its status says "enabled".
            token_enabled=status.lower() == "enabled",
            repository_patterns=patterns,
            passwords=passwords,
        )

    # -- RegistryInventory (governance: preflight, discovery, token expiry) ---------------------
    def get_registry(self, registry_id: str) -> RegistryState:
        arm_id = _parse_registry_id(registry_id)
        client = self._client(arm_id.subscription_id)
        with self._errors("registries.get", registry_id):
            registry = client.registries.get(arm_id.resource_group, arm_id.registry, **self._operation_options())
        properties = registry.properties
        return RegistryState(
            resource_id=_text(registry.id) or registry_id,
            name=_text(registry.name) or arm_id.registry,
            sku=_text(_field(_field(registry, "sku"), "name")),
            # Only what ARM states counts: a dedicated data endpoint is on when it says true.
            data_endpoint_enabled=_field(properties, "data_endpoint_enabled") is True,
            login_server=_text(_field(properties, "login_server")) or None,
            location=_text(_field(registry, "location")) or None,
        )

    def list_connected_registries(self, registry_id: str) -> list[ConnectedRegistryState]:
        arm_id = _parse_registry_id(registry_id)
        client = self._client(arm_id.subscription_id)
        with self._errors("connected_registries.list", registry_id):
            # The pager is lazy: every page is fetched (with the same per-operation options) while
            # iterating, so iterating inside the error translation matters.
            items = list(
                client.connected_registries.list(arm_id.resource_group, arm_id.registry, **self._operation_options())
            )
        observed_at = self._clock()
        states = []
        for item in items:
            resource_id = _text(item.id) or f"{registry_id}/connectedRegistries/{_text(item.name)}"
            states.append(_to_state(resource_id, _text(item.name) or "", item, observed_at))
        return states

    def get_token(self, token_id: str) -> TokenState:
        arm_id = _parse_id(token_id, _KIND_TOKEN)
        client = self._client(arm_id.subscription_id)
        with self._errors("tokens.get", token_id):
            token = client.tokens.get(arm_id.resource_group, arm_id.registry, arm_id.name, **self._operation_options())
        properties = token.properties
        return TokenState(
            token_id=token_id,
            name=_text(token.name) or arm_id.name,
            status=_text(_field(properties, "status")),
            passwords=_passwords(token_id, _field(_field(properties, "credentials"), "passwords")),
            scope_map_id=_text(_field(properties, "scope_map_id")) or None,
        )

    def close(self) -> None:
        """Close every client. Idempotent; a later call builds fresh clients."""
        self._clients.close()

    # -- plumbing ------------------------------------------------------------------------------
    def _client(self, subscription_id: str) -> ContainerRegistryManagementClient:
        return self._clients.get(subscription_id)

    def _new_client(self, subscription_id: str) -> ContainerRegistryManagementClient:
        options = management_client_options(self._base_url, self._retry_total)
        return ContainerRegistryManagementClient(self._credential, subscription_id, **options)

    def _operation_options(self) -> dict[str, Any]:
        # azure-core reads enforce_https per operation only: given to the client constructor, it
        # never reaches the bearer-token policy.
        return {} if self._enforce_https else {"enforce_https": False}

    @contextmanager
    def _errors(self, operation: str, resource_id: str) -> Iterator[None]:
        with azure_errors("ARM", operation, resource_id):
            yield


C = TypeVar("C")


class ManagementClients(Generic[C]):
    """Management clients built on first use, once per subscription (ids compare case-blind), and
    kept until :meth:`close` (safe across threads)."""

    def __init__(self, build: Callable[[str], C]) -> None:
        self._build = build
        self._clients: dict[str, C] = {}
        self._lock = threading.Lock()

    def get(self, subscription_id: str) -> C:
        key = subscription_id.lower()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._build(subscription_id)
                logger.debug("ARM client created for subscription %s", subscription_id)
            return client

    def close(self) -> None:
        """Close every client. Idempotent; a later call builds fresh ones."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()  # type: ignore[attr-defined]  # every management client has close()


def management_client_options(base_url: str | None, retry_total: int) -> dict[str, Any]:
    """How every management client of acrsync talks to ARM: bounded retries and timeouts, and on a
    sovereign cloud (``base_url``) its own endpoint and token audience."""
    options: dict[str, Any] = {
        "retry_policy": BoundedRetryPolicy(
            max_retry_after=MAX_RETRY_AFTER_SECONDS, retry_total=retry_total, timeout=OPERATION_TIMEOUT_SECONDS
        ),
        "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
    }
    if base_url is not None:
        options["base_url"] = base_url
        # The SDK takes the token scope from the public cloud even when base_url points
        # elsewhere; a sovereign cloud's ARM wants tokens for its own audience.
        options["credential_scopes"] = [f"{base_url}/.default"]
    return options


@contextmanager
def azure_errors(service: str, operation: str, resource_id: str) -> Iterator[None]:
    """Translate Azure SDK exceptions into the acrsync tree: the one place the management and query
    adapters do so (``service`` names who answered: ARM, Log Analytics)."""
    try:
        yield
    except HttpResponseError as exc:  # includes ResourceNotFoundError, ClientAuthenticationError
        status = exc.status_code
        summary = _describe_http(exc)
        what = f"{service} {operation} {resource_id} failed: {summary}"
        if status == 404:
            logger.info("%s %s %s: not found (%s)", service, operation, resource_id, summary)
            raise NotFound(what) from exc
        logger.warning("%s %s %s failed: %s", service, operation, resource_id, summary)
        # No status: the credential could not get a token (managed identity endpoint down, or
        # not configured) or a 2xx body could not be decoded; both may pass.
        if status is None or status < 400 or status in _RETRYABLE_STATUS or status >= 500:
            raise UpstreamUnavailable(what) from exc
        raise UpstreamRejected(what) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        # Connection refused or reset, DNS, timeouts (including the operation's absolute one).
        logger.warning("%s %s %s failed: %s", service, operation, resource_id, type(exc).__name__)
        raise UpstreamUnavailable(
            f"{service} {operation} {resource_id} failed: unreachable ({type(exc).__name__})"
        ) from exc
    except AzureError as exc:
        logger.warning("%s %s %s failed: %s", service, operation, resource_id, type(exc).__name__)
        raise UpstreamUnavailable(f"{service} {operation} {resource_id} failed ({type(exc).__name__})") from exc
    except ValueError as exc:
        # The SDK calls response.json() itself when the body was not labelled JSON (an HTML
        # page from a proxy, say): a garbled answer, worth another try later.
        logger.warning("%s %s %s: unreadable response (%s)", service, operation, resource_id, type(exc).__name__)
        raise UpstreamUnavailable(f"{service} {operation} {resource_id} failed: unreadable response") from exc


# -- mapping ---------------------------------------------------------------------------------------
def _describe_http(exc: HttpResponseError) -> str:
    """Status plus ARM's error code and message (which name principals and scopes, never tokens)."""
    parts = [f"HTTP {exc.status_code}" if exc.status_code is not None else type(exc).__name__]
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code:
        parts.append(str(code))
    if message:
        parts.append(" ".join(str(message).split())[:_MAX_ERROR_TEXT])
    return ": ".join(parts)


def _field(model: Any, name: str) -> Any:
    """An attribute of an optional SDK model (a missing parent object reads as ``None``)."""
    return None if model is None else getattr(model, name, None)


def _text(value: Any) -> str | None:
    """SDK enums are ``str`` enums whose ``str()`` is ``'Enum.MEMBER'``; unknown values arrive as ``str``."""
    if value is None:
        return None
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _datetime(value: Any, *, field: str, resource_id: str) -> datetime | None:
    """A timezone-aware UTC datetime, from a parsed datetime or the raw wire text the SDK left."""
    if value is None or value == "":
        return None
    parsed: datetime | None = value if isinstance(value, datetime) else None
    if parsed is None and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:
                parsed = isodate.parse_datetime(value)
            except (isodate.ISO8601Error, ValueError, TypeError, AttributeError):
                parsed = None
    if parsed is None:
        logger.warning("ARM %s: ignoring unreadable %s %r", resource_id, field, value)
        return None
    if parsed.tzinfo is None:  # ARM times are UTC; a bare one means the 'Z' went missing
        return parsed.replace(tzinfo=UTC)
    # The SDK hands back isodate's own UTC tzinfo; convert so values compare and print uniformly.
    return parsed.astimezone(UTC)


def _duration(value: Any, *, field: str, resource_id: str, reference: datetime) -> timedelta | None:
    """A timedelta from what the SDK hands back: a timedelta, an ``isodate.Duration`` (the SDK's
    result for months or years, e.g. ``P1M``), or the raw ISO 8601 text it could not parse."""
    if value is None or value == "":
        return None
    parsed = value
    if isinstance(value, str):
        try:
            parsed = isodate.parse_duration(value)
        except (isodate.ISO8601Error, ValueError, TypeError, AttributeError):
            parsed = None
    if isinstance(parsed, timedelta):
        return parsed
    if isinstance(parsed, isodate.Duration):
        # Months or years: their length depends on the calendar; count from the observation.
        result: timedelta = parsed.totimedelta(start=reference)
        return result
    logger.warning("ARM %s: ignoring unreadable %s %r", resource_id, field, value)
    return None


def _to_state(resource_id: str, name: str, registry: Any, observed_at: datetime) -> ConnectedRegistryState:
    properties = registry.properties
    sync = _field(_field(properties, "parent"), "sync_properties")
    activation = _text(_field(_field(properties, "activation"), "status"))
    if activation is None:
        logger.warning("ARM %s has no activation status; treating it as inactive", resource_id)

    details = tuple(
        StatusDetail(
            type=_text(_field(detail, "type")) or "",
            code=_text(_field(detail, "code")) or "",  # a string on the wire ("200"), kept so
            description=_text(_field(detail, "description")) or "",
            timestamp=_datetime(_field(detail, "timestamp"), field="statusDetails.timestamp", resource_id=resource_id),
        )
        for detail in _field(properties, "status_details") or ()
    )
    return ConnectedRegistryState(
        resource_id=resource_id,
        name=_text(registry.name) or name,
        connection_state=ConnectionState.parse(_text(_field(properties, "connection_state"))),
        observed_at=observed_at,
        # Only what ARM states counts: deployed on-premises means activation "Active".
        active=(activation or "").lower() == "active",
        mode=_text(_field(properties, "mode")),
        provisioning_state=_text(_field(properties, "provisioning_state")),
        last_activity_time=_datetime(
            _field(properties, "last_activity_time"), field="lastActivityTime", resource_id=resource_id
        ),
        last_sync_time=_datetime(_field(sync, "last_sync_time"), field="lastSyncTime", resource_id=resource_id),
        schedule=_text(_field(sync, "schedule")) or None,
        sync_window=_duration(
            _field(sync, "sync_window"), field="syncWindow", resource_id=resource_id, reference=observed_at
        ),
        message_ttl=_duration(
            _field(sync, "message_ttl"), field="messageTtl", resource_id=resource_id, reference=observed_at
        ),
        token_id=_text(_field(sync, "token_id")) or None,
        status_details=details,
        notifications=tuple(str(item) for item in _field(properties, "notifications_list") or ()),
        client_token_ids=tuple(str(item) for item in _field(properties, "client_token_ids") or ()),
        parent_id=_text(_field(_field(properties, "parent"), "id")) or None,
        sync_auth=SyncAuth.parse(_text(_wire(sync, "authType"))),
        sync_result=_sync_result(
            _wire(sync, "registrySyncResult") or _wire(properties, "registrySyncResult"), resource_id
        ),
    )


def _wire(model: Any, key: str) -> Any:
    """A field by its wire name, for fields newer than the SDK's models (preview API): the models keep
    every key of the JSON they were built from and read like a mapping; an older model may not."""
    if model is None:
        return None
    getter = getattr(model, "get", None)
    try:
        return getter(key) if callable(getter) else None
    except (TypeError, KeyError):
        return None


def _sync_result(raw: Any, resource_id: str) -> SyncResult | None:
    """``registrySyncResult`` when ARM sends it; the SDK puts it under the connected registry's properties
    while the CLI's docs put it under ``parent.syncProperties``, so both are looked at."""
    if not isinstance(raw, dict):
        return None
    return SyncResult(
        state=_text(raw.get("syncState")),
        trigger=_text(raw.get("syncTrigger")),
        last_successful_end=_datetime(
            raw.get("lastSuccessfulSyncEndTime"),
            field="registrySyncResult.lastSuccessfulSyncEndTime",
            resource_id=resource_id,
        ),
    )


def _passwords(token_id: str, passwords: Any) -> tuple[TokenPassword, ...]:
    return tuple(
        TokenPassword(
            name=_text(_field(password, "name")) or "",
            expiry=_datetime(_field(password, "expiry"), field="password expiry", resource_id=token_id),
        )
        for password in passwords or ()
    )


def _repository_patterns(actions: Any) -> tuple[str, ...]:
    """The ``<repo>`` of every ``repositories/<repo>/content/read`` action, in order, without repeats.

    ``<repo>`` may be ``*`` or end in ``/*``; those stay glob patterns for :meth:`SyncScope.covers`.
    Metadata, write and gateway actions do not decide what content reaches the site.
    """
    patterns: list[str] = []
    for action in actions or ():
        text = str(action)
        lowered = text.lower()
        if not (lowered.startswith(_READ_ACTION_PREFIX) and lowered.endswith(_READ_ACTION_SUFFIX)):
            continue
        repository = text[len(_READ_ACTION_PREFIX) : len(text) - len(_READ_ACTION_SUFFIX)]
        if repository and repository not in patterns:
            patterns.append(repository)
    return tuple(patterns)
