"""Release annotations on every store backend: recorded with who and when, refused whole when bad (and
then nothing changes), required by the gate on request, and signed by the release checkpoint."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from orchestrations.api import create_app
from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap, use_services
from shared.config import Settings
from shared.domain.annotations import value_digest
from shared.domain.evidence_bundles import verify_bundle
from shared.domain.model import Site
from shared.domain.receipts import ReceiptError, ReceiptSigner
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.ports import StateStore
from shared.services.bundles import evidence_bundle
from shared.services.summaries import summarize_release
from tests.builders import move_row, push_release
from tests.fakes import CountingSink, FakeClock

asgi_app = create_app()
NOW = datetime(2026, 11, 24, 9, 42, tzinfo=UTC)
APPROVAL = "https://dev.azure.com/contoso/edge/_releaseProgress?releaseId=4711"
OPERATOR = "release-manager@contoso.example"


def principal(*roles: str, name: str = OPERATOR) -> str:
    claims = [{"typ": "roles", "val": role} for role in roles] + [{"typ": "name", "val": name}]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


OPERATE = {"X-MS-CLIENT-PRINCIPAL": principal("Sync.Operate")}


@pytest.fixture
def services(store: StateStore, tmp_path: Path) -> Iterator[Services]:
    clock = FakeClock(NOW)
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=clock.now)
    wired = bootstrap(
        Settings(data_dir=tmp_path, require_roles=True, app_service_auth=True),
        store=store,
        queue=queue,
        clock=clock,
        events=CountingSink(),
        signer=ReceiptSigner(Ed25519PrivateKey.generate()),
    )
    store.upsert_sites([Site(name="plant-01", repositories=("inspection/*",))])
    wired.catalog.invalidate()
    use_services(wired)
    yield wired
    use_services(None)
    queue.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(asgi_app, headers=OPERATE)  # an operator unless a test says otherwise


@pytest.fixture
def release_id(services: Services) -> str:
    return push_release(services, at=NOW - timedelta(minutes=1))


def annotate(client: TestClient, release_id: str, body: Any, **headers: str) -> Any:
    return client.patch(f"/api/releases/{release_id}/annotations", json=body, headers={**OPERATE, **headers})


def test_fields_are_recorded_with_who_and_when_and_a_change_adds_to_the_history(
    client: TestClient, services: Services, release_id: str
) -> None:
    first = annotate(client, release_id, {"owner": "vision-team", "approval_url": APPROVAL, "change_record": "CHG0042"})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "owner": "vision-team",
        "approval_url": APPROVAL,
        "change_record": "CHG0042",
        "rollback_condition": None,
        "note": None,
        "set_by": OPERATOR,
        "set_at": NOW.isoformat(),
    }
    services.clock.current = NOW + timedelta(minutes=5)  # type: ignore[attr-defined]
    second = annotate(client, release_id, {"note": "camera firmware 7.2 only\nsee runbook §4", "change_record": None})
    assert second.status_code == 200 and second.json()["change_record"] is None

    release = client.get(f"/api/releases/{release_id}").json()
    assert release["annotations"]["note"] == "camera firmware 7.2 only\nsee runbook §4"
    assert release["annotations"]["set_at"] == (NOW + timedelta(minutes=5)).isoformat()
    assert [change["changed"] for change in release["annotation_history"]] == [
        {
            "approval_url": value_digest(APPROVAL),
            "change_record": value_digest("CHG0042"),
            "owner": value_digest("vision-team"),
        },
        {"change_record": None, "note": value_digest("camera firmware 7.2 only\nsee runbook §4")},
    ]
    assert {change["by"] for change in release["annotation_history"]} == {OPERATOR}

    # The same fields again record nothing new.
    annotate(client, release_id, {"owner": "vision-team"})
    assert len(client.get(f"/api/releases/{release_id}").json()["annotation_history"]) == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"approval_url": "not a url"}, "INVALID_APPROVAL_URL"),
        ({"approval_url": "javascript:alert(1)"}, "INVALID_APPROVAL_URL"),
        ({"approval_url": "ftp://approvals.contoso.example/4711"}, "INVALID_APPROVAL_URL"),
        ({"approval_url": "https://ci:hunter2@approvals.contoso.example/4711"}, "INVALID_APPROVAL_URL"),
        ({"note": "x" * 1_000_000}, "ANNOTATION_TOO_LONG"),
        ({"note": "x" * 4001}, "ANNOTATION_TOO_LONG"),
        ({"owner": "ops\u0007"}, "INVALID_ANNOTATIONS"),
        ({"owner": "ops", "approver": "me"}, "INVALID_ANNOTATIONS"),
        ({"owner": 7}, "INVALID_ANNOTATIONS"),
        ({}, "INVALID_ANNOTATIONS"),
        (["owner", "ops"], "INVALID_ANNOTATIONS"),
    ],
)
def test_bad_input_is_refused_whole_and_changes_nothing(
    client: TestClient, services: Services, release_id: str, body: Any, code: str
) -> None:
    annotate(client, release_id, {"owner": "vision-team"})
    before = services.store.release_version(release_id)
    answer = annotate(
        client, release_id, {**body, "change_record": "CHG0042"} if isinstance(body, dict) and body else body
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code
    assert "hunter2" not in answer.text
    assert services.store.release_version(release_id) == before
    assert client.get(f"/api/releases/{release_id}").json()["annotations"]["change_record"] is None


def test_an_unknown_release_is_404_and_a_reader_may_not_annotate(client: TestClient, release_id: str) -> None:
    missing = annotate(client, "0" * 32, {"owner": "ops"})
    assert missing.status_code == 404 and missing.json()["code"] == "RELEASE_NOT_FOUND"
    reader = client.patch(
        f"/api/releases/{release_id}/annotations",
        json={"owner": "ops"},
        headers={"X-MS-CLIENT-PRINCIPAL": principal("Status.Read")},
    )
    assert reader.status_code == 403
    assert client.get(f"/api/releases/{release_id}", headers=OPERATE).json()["annotations"]["owner"] is None


def test_the_gate_can_require_an_approval_link(client: TestClient, services: Services, release_id: str) -> None:
    move_row(
        services,
        release_id,
        "plant-01",
        SyncState.VERIFIED,
        SyncReason.MANIFEST_PRESENT,
        at=NOW,
        source=EvidenceSource.OCI_PROBE,
    )
    gate = f"/api/releases/{release_id}/readiness"
    assert client.get(gate, headers=OPERATE).json()["state"] == "ready"
    blocked = client.get(f"{gate}?require_approval=true", headers=OPERATE).json()
    assert blocked["state"] == "failed" and blocked["require_approval"] is True
    assert blocked["reasons"] == [{"code": "APPROVAL_MISSING", "sites": []}]
    annotate(client, release_id, {"owner": "vision-team"})
    assert client.get(f"{gate}?require_approval=true", headers=OPERATE).json()["state"] == "failed"
    annotate(client, release_id, {"approval_url": APPROVAL})
    assert client.get(f"{gate}?require_approval=true", headers=OPERATE).json()["state"] == "ready"


def test_the_checkpoint_signs_the_annotations_and_a_changed_one_is_caught(
    client: TestClient, services: Services, release_id: str
) -> None:
    annotate(client, release_id, {"approval_url": APPROVAL, "rollback_condition": "error rate above 2 % for 10 min"})
    summarize_release(services, release_id)
    bundle = evidence_bundle(services, release_id)
    assert bundle["annotations"]["fields"]["approval_url"] == APPROVAL
    assert bundle["release"]["annotations"]["approval_url"] == APPROVAL
    verify_bundle(bundle)

    forged = copy.deepcopy(bundle)
    forged["annotations"]["fields"]["approval_url"] = "https://approvals.contoso.example/other"
    with pytest.raises(ReceiptError, match="annotations"):
        verify_bundle(forged)
    dropped = copy.deepcopy(bundle)
    dropped["annotations"] = None
    with pytest.raises(ReceiptError, match="annotations"):
        verify_bundle(dropped)
