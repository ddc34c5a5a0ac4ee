"""Settings: one frozen object read from the environment (Functions app settings in Azure).

Names follow Azure Functions conventions so the same names work as app settings, in
``local.settings.json`` and in a shell. Without any Azure setting acrsync runs on the embedded
SQLite store and queue. Missing or contradictory settings raise :class:`ConfigurationError` naming
the setting; nothing here ever echoes a setting's value, since connection strings carry keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlparse

from shared.domain.observations import BasicCredentials
from shared.errors import ConfigurationError

# Setting names, in one place: the Bicep template sets exactly these (see infra/).
DATA_DIR = "ACRSYNC_DATA_DIR"
TABLE_CONNECTION = "SYNC_TABLE_CONNECTION"
TABLE_ENDPOINT = "SYNC_TABLE_ENDPOINT"
TABLE_PREFIX = "SYNC_TABLE_PREFIX"
SERVICEBUS_CONNECTION = "ServiceBusConnection"
SERVICEBUS_NAMESPACE = "ServiceBusConnection__fullyQualifiedNamespace"
SYNC_QUEUE = "SYNC_QUEUE"
SYNC_QUEUE_MAX_BATCH_BYTES = "SYNC_QUEUE_MAX_BATCH_BYTES"
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
REGISTRY = "ACRSYNC_REGISTRY"
EVENTS_TOPIC_ENDPOINT = "EVENTS_TOPIC_ENDPOINT"
ARM_ENDPOINT = "ACRSYNC_ARM_ENDPOINT"
SITE_CREDENTIALS = "ACRSYNC_SITE_CREDENTIALS"
API_KEY = "ACRSYNC_API_KEY"
REQUIRE_ROLES = "ACRSYNC_REQUIRE_ROLES"
TOKEN_EXPIRY_HORIZON_DAYS = "ACRSYNC_TOKEN_EXPIRY_HORIZON_DAYS"  # noqa: S105 - a setting's name
SIGNING_KEY = "ACRSYNC_SIGNING_KEY"
OUTDATED_AFTER_HOURS = "ACRSYNC_OUTDATED_AFTER_HOURS"
REPORT_SECRET = "ACRSYNC_REPORT_SECRET"  # noqa: S105 - a setting's name
# Set by App Service / Functions on every Azure host: tells Azure apart from a laptop.
AZURE_HOST_MARKER = "WEBSITE_SITE_NAME"
# Set by the platform to "True" when App Service Authentication (Easy Auth) runs in front of the app: only
# then is X-MS-CLIENT-PRINCIPAL the platform's statement rather than whatever a caller sent.
APP_SERVICE_AUTH = "WEBSITE_AUTH_ENABLED"

EMBEDDED = "embedded (the data dir)"
DEFAULT_QUEUE = "site-sync"
DEFAULT_TABLE_PREFIX = "acrsync"
DEFAULT_TOKEN_EXPIRY_HORIZON_DAYS = 30
MAX_TOKEN_EXPIRY_HORIZON_DAYS = 365
DEFAULT_OUTDATED_AFTER_HOURS = 24
MAX_OUTDATED_AFTER_HOURS = 24 * 90
MIN_REPORT_SECRET_LENGTH = 32
_TABLE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,259}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# A local API key is the only thing between the network and the API when `acrsync dev` binds a
# non-loopback interface, so a guessable one is refused.
MIN_API_KEY_LENGTH = 16


class StoreBackend(StrEnum):
    SQLITE = "sqlite"
    TABLES = "azure-tables"


class QueueBackend(StrEnum):
    SQLITE = "sqlite"
    SERVICE_BUS = "azure-servicebus"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything acrsync reads from its environment.

    Attributes:
        data_dir: folder of the embedded SQLite files (store and queue).
        table_connection: a Table Storage connection string (also ``UseDevelopmentStorage=true``).
        table_endpoint: a Table Storage endpoint for identity-based access.
        table_prefix: prefix of the acrsync table names.
        servicebus_connection: a Service Bus connection string.
        servicebus_namespace: a Service Bus namespace for identity-based access.
        sync_queue: the jobs queue name.
        sync_queue_max_batch_bytes: cap on a Service Bus send batch (default: what the link allows).
        managed_identity_client_id: the user-assigned identity to authenticate with, if any.
        registry: the parent registry's login server, when known.
        events_topic_endpoint: the Event Grid topic acrsync publishes to (the local outbox when unset).
        arm_endpoint: the ARM endpoint for a sovereign cloud (public Azure when unset).
        site_credentials: site client-token credentials for direct checks, by site (from
            ``ACRSYNC_SITE_CREDENTIALS``, checked when the settings are read; never shown).
        api_key: the local API key every protected HTTP route then requires (``x-functions-key`` or
            ``?code=``); never shown. Unset means the local API is open (Azure checks function keys itself).
        require_roles: whether every protected HTTP route needs an App Service Authentication principal
            (``X-MS-CLIENT-PRINCIPAL``) with the right app role.
        app_service_auth: whether App Service Authentication runs in front of the app
            (``WEBSITE_AUTH_ENABLED``); without it a ``X-MS-CLIENT-PRINCIPAL`` header is not trusted.
        signing_key: the Ed25519 private key that signs delivery receipts (PEM, or base64 of its 32
            raw bytes; a Key Vault reference in Azure); never shown. Unset: a key kept in ``data_dir``
            locally, no receipts in Azure.
        in_azure: whether the process runs on an Azure Functions host.
        token_expiry_horizon_days: a site's token expiring within this many days is flagged (and
            announced once as ``acrsync.site.token_expiring``); the same horizon flags a site's TLS
            certificate (``acrsync.site.tls_expiring``).
        outdated_after_hours: a site still running a digest this long after a newer release of its
            repository arrived there is outdated (``acrsync.site.outdated``).
        report_secret: what site report tokens are derived from (a Key Vault reference in Azure); never
            shown. Unset: a secret kept in ``data_dir`` locally; in Azure site reports are refused.
    """

    data_dir: Path = Path(".acrsync")
    table_connection: str | None = None
    table_endpoint: str | None = None
    table_prefix: str = DEFAULT_TABLE_PREFIX
    servicebus_connection: str | None = None
    servicebus_namespace: str | None = None
    sync_queue: str = DEFAULT_QUEUE
    sync_queue_max_batch_bytes: int | None = None
    managed_identity_client_id: str | None = None
    registry: str | None = None
    events_topic_endpoint: str | None = None
    arm_endpoint: str | None = None
    site_credentials: Mapping[str, BasicCredentials] = field(default_factory=dict, repr=False)
    api_key: str | None = field(default=None, repr=False)
    require_roles: bool = False
    app_service_auth: bool = False
    signing_key: str | None = field(default=None, repr=False)
    in_azure: bool = False
    token_expiry_horizon_days: int = DEFAULT_TOKEN_EXPIRY_HORIZON_DAYS
    outdated_after_hours: int = DEFAULT_OUTDATED_AFTER_HOURS
    report_secret: str | None = field(default=None, repr=False)

    @property
    def outdated_after(self) -> timedelta:
        return timedelta(hours=self.outdated_after_hours)

    @property
    def store_backend(self) -> StoreBackend:
        return StoreBackend.TABLES if (self.table_connection or self.table_endpoint) else StoreBackend.SQLITE

    @property
    def queue_backend(self) -> QueueBackend:
        uses_service_bus = self.servicebus_connection or self.servicebus_namespace
        return QueueBackend.SERVICE_BUS if uses_service_bus else QueueBackend.SQLITE

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "acrsync.db"

    def describe(self) -> dict[str, str]:
        """What the process runs on, safe to show: no connection strings, no keys, no file-system paths."""
        store = self.table_endpoint or ("connection string" if self.table_connection else EMBEDDED)
        queue = self.servicebus_namespace or ("connection string" if self.servicebus_connection else EMBEDDED)
        return {
            "store": self.store_backend.value,
            "store_location": store,
            "queue": self.queue_backend.value,
            "queue_location": queue,
            "queue_name": self.sync_queue,
            "events": self.events_topic_endpoint or "local outbox",
        }

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Settings:
        """Read and check settings.

        Raises:
            ConfigurationError: a setting is malformed, or settings contradict each other.
        """
        values = {key: value.strip() for key, value in env.items() if isinstance(value, str) and value.strip()}
        settings = cls(
            data_dir=Path(values.get(DATA_DIR, ".acrsync")),
            table_connection=values.get(TABLE_CONNECTION),
            table_endpoint=_url(values, TABLE_ENDPOINT),
            table_prefix=_matching(values, TABLE_PREFIX, _TABLE_PREFIX, DEFAULT_TABLE_PREFIX),
            servicebus_connection=values.get(SERVICEBUS_CONNECTION),
            servicebus_namespace=values.get(SERVICEBUS_NAMESPACE),
            sync_queue=_matching(values, SYNC_QUEUE, _QUEUE_NAME, DEFAULT_QUEUE),
            sync_queue_max_batch_bytes=_positive_int(values, SYNC_QUEUE_MAX_BATCH_BYTES),
            managed_identity_client_id=values.get(AZURE_CLIENT_ID),
            registry=values.get(REGISTRY, "").lower() or None,
            events_topic_endpoint=_url(values, EVENTS_TOPIC_ENDPOINT),
            arm_endpoint=_url(values, ARM_ENDPOINT),
            site_credentials=parse_site_credentials(values.get(SITE_CREDENTIALS)),
            api_key=_api_key(values),
            require_roles=parse_bool(values, REQUIRE_ROLES, default=False),
            app_service_auth=parse_bool(values, APP_SERVICE_AUTH, default=False),
            signing_key=_signing_key(values),
            in_azure=AZURE_HOST_MARKER in values,
            token_expiry_horizon_days=_horizon_days(values),
            outdated_after_hours=_bounded_int(
                values, OUTDATED_AFTER_HOURS, DEFAULT_OUTDATED_AFTER_HOURS, MAX_OUTDATED_AFTER_HOURS, "hours"
            ),
            report_secret=_report_secret(values),
        )
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        if self.table_connection and self.table_endpoint:
            raise ConfigurationError(f"set either {TABLE_CONNECTION} or {TABLE_ENDPOINT}, not both")
        if self.servicebus_connection and self.servicebus_namespace:
            raise ConfigurationError(f"set either {SERVICEBUS_CONNECTION} or {SERVICEBUS_NAMESPACE}, not both")
        if self.queue_backend is QueueBackend.SERVICE_BUS and self.store_backend is StoreBackend.SQLITE:
            raise ConfigurationError(
                f"{SERVICEBUS_NAMESPACE} (or {SERVICEBUS_CONNECTION}) is set but {TABLE_ENDPOINT} is not: "
                "workers sharing a Service Bus queue need the shared Table Storage store"
            )
        if self.in_azure and self.store_backend is StoreBackend.SQLITE:
            raise ConfigurationError(
                f"{TABLE_ENDPOINT} is required on an Azure host (the embedded store is local-only)"
            )
        if self.in_azure and self.require_roles and not self.app_service_auth:
            raise ConfigurationError(
                f"{REQUIRE_ROLES} is true but App Service Authentication is off ({APP_SERVICE_AUTH}): no caller "
                "could prove a role; enable authentication (infra/main.bicep enableAppServiceAuth) or unset it"
            )
        if self.in_azure and self.queue_backend is QueueBackend.SQLITE:
            raise ConfigurationError(
                f"{SERVICEBUS_NAMESPACE} is required on an Azure host (the embedded queue is local-only)"
            )


def parse_site_credentials(raw: str | None) -> dict[str, BasicCredentials]:
    """Read ``ACRSYNC_SITE_CREDENTIALS``: ``{"<site>": {"username": ..., "password": ..., "token_realms":
    [...]}}`` (``token_realms``, optional: origins of a token service other than the site's registry that
    may receive the credentials); unset or blank means no site has credentials.

    Raises:
        ConfigurationError: the value is not such an object. The message names the setting and, at most,
            the offending site; never the value.
    """
    if raw is None or not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        # ``from None``: the decoder's message quotes the document, which holds passwords.
        raise ConfigurationError(f"{SITE_CREDENTIALS} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{SITE_CREDENTIALS} must be a JSON object keyed by site name")
    credentials: dict[str, BasicCredentials] = {}
    for site, entry in document.items():
        username = entry.get("username") if isinstance(entry, dict) else None
        password = entry.get("password") if isinstance(entry, dict) else None
        if not isinstance(username, str) or not username or not isinstance(password, str):
            raise ConfigurationError(f'{SITE_CREDENTIALS}: site {site[:64]!r} needs string "username" and "password"')
        realms = entry.get("token_realms", [])
        if not isinstance(realms, list) or not all(isinstance(realm, str) and "://" in realm for realm in realms):
            raise ConfigurationError(f"{SITE_CREDENTIALS}: site {site[:64]!r}: token_realms is a list of origins")
        credentials[site] = BasicCredentials(username=username, password=password, token_realms=tuple(realms))
    return credentials


def parse_bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """Strict boolean: true/false, yes/no, on/off, 1/0; anything else is a configuration error."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false")


def _url(values: Mapping[str, str], name: str) -> str | None:
    raw = values.get(name)
    if raw is None:
        return None
    return _https_url(raw, name)


def arm_endpoint_url(text: str) -> str:
    """An ARM endpoint given on the command line (``--arm-endpoint``), checked like ``ACRSYNC_ARM_ENDPOINT``.

    Raises:
        ConfigurationError: not ``https://`` (``http://`` is accepted on loopback only).
    """
    return _https_url(text.strip(), "--arm-endpoint")


def _https_url(raw: str, name: str) -> str:
    parsed = urlparse(raw)
    loopback = parsed.hostname in {"127.0.0.1", "localhost", "::1"}
    if not parsed.hostname or (parsed.scheme != "https" and not (parsed.scheme == "http" and loopback)):
        raise ConfigurationError(f"{name} must be an https:// URL (http:// only on loopback)")
    return raw.rstrip("/")


def _matching(values: Mapping[str, str], name: str, pattern: re.Pattern[str], default: str) -> str:
    raw = values.get(name, default)
    if not pattern.fullmatch(raw):
        raise ConfigurationError(f"{name} has a value that is not a valid name ({pattern.pattern})")
    return raw


def _api_key(values: Mapping[str, str]) -> str | None:
    raw = values.get(API_KEY)
    if raw is None:
        return None
    if len(raw) < MIN_API_KEY_LENGTH or not raw.isascii() or not raw.isprintable():
        raise ConfigurationError(f"{API_KEY} must be at least {MIN_API_KEY_LENGTH} printable ASCII characters")
    return raw


def _signing_key(values: Mapping[str, str]) -> str | None:
    raw = values.get(SIGNING_KEY)
    if raw is None:
        return None
    if raw.startswith("@Microsoft.KeyVault("):
        raise ConfigurationError(
            f"{SIGNING_KEY} is a Key Vault reference that did not resolve: give the app's identity read access "
            "to the secret (Key Vault Secrets User) and check that the secret exists"
        )
    from shared.domain.receipts import load_private_key  # noqa: PLC0415 - only when set: cryptography is heavy

    try:
        load_private_key(raw)
    except ValueError:
        raise ConfigurationError(
            f"{SIGNING_KEY} must be an Ed25519 private key: PEM (PKCS#8), or base64 of its 32 raw bytes"
        ) from None
    return raw


def _horizon_days(values: Mapping[str, str]) -> int:
    raw = values.get(TOKEN_EXPIRY_HORIZON_DAYS)
    if raw is None:
        return DEFAULT_TOKEN_EXPIRY_HORIZON_DAYS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOKEN_EXPIRY_HORIZON_DAYS:
        raise ConfigurationError(
            f"{TOKEN_EXPIRY_HORIZON_DAYS} must be a whole number of days from 1 to {MAX_TOKEN_EXPIRY_HORIZON_DAYS}"
        )
    return int(raw)


def _bounded_int(values: Mapping[str, str], name: str, default: int, maximum: int, unit: str) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ConfigurationError(f"{name} must be a whole number of {unit} from 1 to {maximum}")
    return int(raw)


def _report_secret(values: Mapping[str, str]) -> str | None:
    raw = values.get(REPORT_SECRET)
    if raw is None:
        return None
    if len(raw) < MIN_REPORT_SECRET_LENGTH:
        raise ConfigurationError(f"{REPORT_SECRET} must be at least {MIN_REPORT_SECRET_LENGTH} characters")
    return raw


def _positive_int(values: Mapping[str, str], name: str) -> int | None:
    raw = values.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigurationError(f"{name} must be a positive whole number of bytes")
    return int(raw)
