from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import QueueBackend, Settings, StoreBackend, parse_bool
from shared.errors import ConfigurationError

SECRET_CONN = (
    "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net"
)


def test_no_azure_settings_means_the_embedded_default() -> None:
    settings = Settings.from_environ({})
    assert settings.store_backend is StoreBackend.SQLITE
    assert settings.queue_backend is QueueBackend.SQLITE
    assert settings.sqlite_path == Path(".acrsync/acrsync.db")
    assert settings.sync_queue == "site-sync"


def test_identity_based_azure_settings() -> None:
    settings = Settings.from_environ(
        {
            "SYNC_TABLE_ENDPOINT": "https://stacrsync.table.core.windows.net/",
            "ServiceBusConnection__fullyQualifiedNamespace": "sb-acrsync.servicebus.windows.net",
            "SYNC_QUEUE": "jobs",
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
            "WEBSITE_SITE_NAME": "func-acrsync",
        }
    )
    assert settings.store_backend is StoreBackend.TABLES and settings.queue_backend is QueueBackend.SERVICE_BUS
    assert settings.table_endpoint == "https://stacrsync.table.core.windows.net"
    assert settings.in_azure and settings.sync_queue == "jobs"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"SYNC_TABLE_CONNECTION": SECRET_CONN, "SYNC_TABLE_ENDPOINT": "https://x.table.core.windows.net"},
            "SYNC_TABLE_ENDPOINT",
        ),
        (
            {
                "ServiceBusConnection": "Endpoint=sb://x/;SharedAccessKey=k",
                "ServiceBusConnection__fullyQualifiedNamespace": "x",
            },
            "ServiceBusConnection__fullyQualifiedNamespace",
        ),
        ({"ServiceBusConnection__fullyQualifiedNamespace": "sb.servicebus.windows.net"}, "SYNC_TABLE_ENDPOINT"),
        ({"WEBSITE_SITE_NAME": "func-acrsync"}, "SYNC_TABLE_ENDPOINT"),
        (
            {"WEBSITE_SITE_NAME": "func", "SYNC_TABLE_ENDPOINT": "https://x.table.core.windows.net"},
            "ServiceBusConnection__fullyQualifiedNamespace",
        ),
        ({"SYNC_TABLE_ENDPOINT": "http://st.table.core.windows.net"}, "SYNC_TABLE_ENDPOINT"),
        ({"SYNC_TABLE_PREFIX": "9bad"}, "SYNC_TABLE_PREFIX"),
        ({"SYNC_QUEUE": "bad queue"}, "SYNC_QUEUE"),
        ({"SYNC_QUEUE_MAX_BATCH_BYTES": "-5"}, "SYNC_QUEUE_MAX_BATCH_BYTES"),
    ],
)
def test_missing_or_contradictory_settings_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named) as info:
        Settings.from_environ(env)
    assert "c2VjcmV0" not in str(info.value) and "SharedAccessKey" not in str(info.value)


def test_describe_never_shows_connection_strings() -> None:
    settings = Settings.from_environ({"SYNC_TABLE_CONNECTION": SECRET_CONN})
    shown = str(settings.describe())
    assert "AccountKey" not in shown and "c2VjcmV0" not in shown
    assert settings.describe()["store"] == "azure-tables"


def test_loopback_http_endpoint_is_allowed_for_emulators() -> None:
    settings = Settings.from_environ({"SYNC_TABLE_ENDPOINT": "http://127.0.0.1:10002/devstoreaccount1"})
    assert settings.store_backend is StoreBackend.TABLES


def test_strict_booleans() -> None:
    assert parse_bool({"X": "Yes"}, "X", default=False) is True
    assert parse_bool({"X": "off"}, "X", default=True) is False
    assert parse_bool({}, "X", default=True) is True
    with pytest.raises(ConfigurationError, match="X"):
        parse_bool({"X": "maybe"}, "X", default=False)


@pytest.mark.parametrize(
    "value",
    [
        '{"plant-01": {"username": "t", "password": "pw-Secret-1"',  # truncated JSON
        '{"plant-01": {"username": "t"}}',  # no password
        '{"plant-01": {"username": "t", "password": "pw-Secret-1", "token_realms": "https://x"}}',  # not a list
        '["pw-Secret-1"]',
    ],
)
def test_broken_site_credentials_stop_start_up_naming_the_setting_never_the_value(value: str) -> None:
    with pytest.raises(ConfigurationError, match="ACRSYNC_SITE_CREDENTIALS") as caught:
        Settings.from_environ({"ACRSYNC_SITE_CREDENTIALS": value})
    assert "pw-Secret-1" not in str(caught.value)


def test_site_credentials_are_read_once_at_start_up_with_their_token_realms() -> None:
    settings = Settings.from_environ(
        {
            "ACRSYNC_SITE_CREDENTIALS": '{"plant-01": {"username": "t", "password": "pw-Secret-1",'
            ' "token_realms": ["https://auth.contoso.example"]}}'
        }
    )
    credentials = settings.site_credentials["plant-01"]
    assert credentials.username == "t" and credentials.token_realms == ("https://auth.contoso.example",)
    assert "pw-Secret-1" not in repr(settings)
