"""Property-based fuzzing of the whole OpenAPI document through the ASGI app: no input may produce a 5xx.

Schemathesis generates valid and invalid requests for every operation (a bounded number each, so
the run stays short). The data is seeded so generated release ids, site names and selections hit
existing entities part of the time, not only the 404 and 400 paths. The status API's answers must
also match what the document says (schemas, status codes, media types, headers), since the CLI and
pipelines are written against it.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrations.api import create_app
from shared.adapters.outbox import SqliteOutbox
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.adapters.sqlite_store import SqliteStateStore
from shared.bootstrap import bootstrap, use_services
from shared.config import Settings
from shared.domain.changes import transition
from shared.domain.model import Site
from shared.domain.names import release_id_for
from shared.domain.observations import ConnectedRegistryState, ConnectionState, OutboundEvent, OutboundEventType
from shared.domain.site_tokens import report_token
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.services.ingest import ingest_delivery
from shared.services.rows import update_row
from tests.fakes import FakeArmReader, FakeClock, delivery, load_event

NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
SITES = [
    Site(name="plant-01", ring="canary", critical=True, repositories=("inspection/*",), reporter=True),
    Site(name="plant-02", ring="canary", repositories=("inspection/*",), connected_registry="/subscriptions/x/cr"),
    Site(
        name="plant-03",
        ring="prod",
        repositories=("inspection/*",),
        schedule="0 22 * * *",
        sync_window=timedelta(hours=3),
    ),
    Site(name="store-01", ring="prod", repositories=("retail/*",)),
]


PUSHES = [("sha256:" + "90fe64c3" * 8, "1.4.2"), ("sha256:" + "1b2c3d4e" * 8, "1.5.0")]
# Path values that name seeded entities; release ids follow from (registry, repository, digest).
SECRET = b"fuzz-report-secret-of-thirty-two-bytes"
KNOWN_PATH = {
    "release_id": [release_id_for("contosoacr.azurecr.io", "inspection/camera", digest) for digest, _ in PUSHES],
    "site": [site.name for site in SITES],
}


def syncing(resource_id: str) -> ConnectedRegistryState:
    return ConnectedRegistryState(
        resource_id=resource_id, name="cr", connection_state=ConnectionState.SYNCING, observed_at=NOW
    )


@pytest.fixture(scope="module", autouse=True)
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    path = tmp_path_factory.mktemp("fuzz") / "s.db"
    store = SqliteStateStore(path)
    store.upsert_sites(SITES)
    services = bootstrap(
        Settings(data_dir=path.parent, report_secret=SECRET.decode()),
        store=store,
        queue=SqliteJobQueue(path),
        clock=FakeClock(NOW),
        arm=FakeArmReader(syncing),
        events=SqliteOutbox(path),
    )
    release_ids = []
    for i, (digest, tag) in enumerate(PUSHES):
        event = copy.deepcopy(load_event("eventgrid-image-pushed"))
        event["id"] = str(uuid.uuid4())
        event["eventTime"] = (NOW - timedelta(hours=2 - i)).isoformat()
        event["data"]["target"].update(tag=tag, digest=digest)
        [result] = ingest_delivery(services, delivery(event), "application/json").results
        assert result.release_id is not None
        release_ids.append(result.release_id)
    for site, state, reason in [
        ("plant-01", SyncState.VERIFIED, SyncReason.MANIFEST_PRESENT),
        ("plant-02", SyncState.FAILED, SyncReason.SYNC_TOKEN_EXPIRED),
    ]:
        update_row(
            store,
            release_ids[0],
            site,
            lambda row, s=state, r=reason: transition(
                row, s, r, source=EvidenceSource.OCI_PROBE, summary="seed", at=NOW
            ),
        )
    services.events.publish(
        [
            OutboundEvent(f"ev-{n}", OutboundEventType.SITE_SYNCED, "/acrsync/test", "sites/plant-01", NOW, {"n": n})
            for n in range(3)
        ]
    )
    use_services(services)
    assert release_ids == KNOWN_PATH["release_id"]
    yield
    use_services(None)
    services.close()


# Query values that select seeded entities (the generated ones mostly miss them).
KNOWN_QUERY = {
    "sites": ["failed", "stale", "plant-01", "plant-01,plant-02", "plant-03,store-01"],
    "site": ["plant-01", "store-01"],
    "ring": ["canary", "prod"],
    "repository": ["inspection/camera"],
    "tag": ["1.4.2"],
    "after": ["ev-0"],
}


OPERATOR = base64.b64encode(json.dumps({"claims": [{"typ": "roles", "val": "Sync.Operate"}]}).encode()).decode()
CONFORMANCE = [
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]
# A fresh app (routes other tests may mount on the shared one stay out); the schema is read from it,
# and its OpenAPI route needs no services.
schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app())


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    names = [name for name in path_parameters or {} if name in KNOWN_PATH]
    known = [{**path_parameters, name: value} for name in names for value in KNOWN_PATH[name]]
    return st.sampled_from([path_parameters, *known])


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any]) -> Any:
    names = [name for name in query or {} if name in KNOWN_QUERY]
    known = [{**query, name: value} for name in names for value in KNOWN_QUERY[name]]
    return st.sampled_from([query, *known])


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_input_produces_a_server_error(case: Any) -> None:
    # The principal header is a declared security scheme, so generated values are mostly garbage
    # (401). A third of the cases keep them; the rest send no principal or a valid operator, so
    # the routes behind auth get fuzzed too (chosen from the case itself: every phase keeps running).
    identity = zlib.crc32(repr((case.path_parameters, case.query, case.headers)).encode()) % 3
    if identity:
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-ms-client-principal"}
        if identity == 2:
            case.headers["X-MS-CLIENT-PRINCIPAL"] = OPERATOR
    if case.operation.path == "/api/sites/{site}/reports" and identity:
        # Past the token too: the site's own token for the site the path names, on two cases in three.
        site = (case.path_parameters or {}).get("site")
        if isinstance(site, str):
            case.headers["Authorization"] = f"Bearer {report_token(SECRET, site)}"
    status_api = case.operation.path.startswith("/api/")
    case.call_and_validate(checks=[not_a_server_error, *(CONFORMANCE if status_api else [])])
