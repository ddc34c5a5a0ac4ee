from __future__ import annotations

from pathlib import Path

from shared.adapters.sqlite_store import SqliteStateStore
from shared.services.catalog import SiteCatalog
from tests.builders import T0, make_site
from tests.fakes import FakeClock


def test_sites_are_read_once_per_ttl_and_refreshed_after(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    clock = FakeClock(T0)
    catalog = SiteCatalog(store, clock)
    store.upsert_sites([make_site("plant-01")])
    assert [s.name for s in catalog.sites()] == ["plant-01"]

    store.upsert_sites([make_site("plant-02")])
    clock.advance(seconds=29)
    assert [s.name for s in catalog.sites()] == ["plant-01"]  # still within the TTL
    clock.advance(seconds=2)
    assert [s.name for s in catalog.sites()] == ["plant-01", "plant-02"]

    store.delete_site("plant-01")
    catalog.invalidate()
    assert [s.name for s in catalog.sites()] == ["plant-02"]
    store.close()
