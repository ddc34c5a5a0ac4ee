"""Session-wide fixtures: the state-store backends (SQLite in tmp_path, Table Storage on Azurite)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.ports import StateStore


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
