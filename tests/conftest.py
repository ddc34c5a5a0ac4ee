"""Session-wide fixtures: the state-store backends (SQLite in tmp_path, Table Storage on Azurite)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.ports import StateStore


def pytest_configure(config: pytest.Config) -> None:
    """scripts/test runs the triggers a second time on the Functions worker's azure-functions; make sure
    that run really imports that version, not the newest one the project installs."""
    expected = os.environ.get("ACRSYNC_EXPECT_AZURE_FUNCTIONS")
    if expected:
        import azure.functions

        if azure.functions.__version__ != expected:
            raise pytest.UsageError(f"expected azure-functions {expected}, imported {azure.functions.__version__}")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Azurite table service on a free loopback port, for the whole test session."""
    from tests.support.azurite import start_azurite

    handle = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield handle
    finally:
        handle.stop()


def _sqlite_store(tmp_path: Path) -> StateStore:
    from shared.adapters.sqlite_store import SqliteStateStore

    return SqliteStateStore(tmp_path / "state.db")


def _tables_store(request: pytest.FixtureRequest) -> StateStore:
    from shared.adapters.azure_tables import AzureTableStore

    server = request.getfixturevalue("azurite")
    store = AzureTableStore.from_connection_string(server.connection_string, table_prefix="t" + secrets.token_hex(5))
    store.ensure_tables()
    return store


@pytest.fixture(params=["sqlite", pytest.param("tables", marks=pytest.mark.azurite)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """Every state-store adapter, so one contract suite holds them all to the same behaviour."""
    backend = _sqlite_store(tmp_path) if request.param == "sqlite" else _tables_store(request)
    try:
        yield backend
    finally:
        backend.close()
