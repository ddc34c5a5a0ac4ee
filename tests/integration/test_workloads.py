"""What runs at each site, on every store backend: a site's report (or any source's observation)
shows which digest runs, for which release, in which workloads; the first sighting signs a RUNNING
receipt into the site's chain that an auditor verifies offline; drift, pull errors, outdated sites
and expiring TLS certificates are shown and announced once; a resent or malformed report changes
nothing; a report buffered while the uplink was down adds history without undoing newer ones."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite_queue import SqliteJobQueue
from shared.bootstrap import Services, bootstrap
from shared.config import Settings
from shared.domain.evidence_bundles import verify_bundle
from shared.domain.observations import OutboundEventType
from shared.domain.receipts import RUNNING_STATE
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.domain.workloads import REPORT_SCHEMA
from shared.errors import InvalidInput
from shared.ports import StateStore
from shared.services.bundles import evidence_bundle
from shared.services.receipts import RECEIPT_DETAIL
from shared.services.workloads import accept_report, announce_expiring_tls, runtime_view, site_runtime
from tests.builders import T0, make_site, move_row, push_release, random_digest
from tests.fakes import CountingSink, FakeClock

SITES = [make_site("plant-01", reporter=True), make_site("plant-02")]
LOCAL = "plant-01.registry.local:8443"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def services(store: StateStore, tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    store.upsert_sites(SITES)
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=clock.now)
    wired = bootstrap(Settings(data_dir=tmp_path), store=store, queue=queue, clock=clock, events=CountingSink())
    yield wired
    queue.close()


def pod(name: str, image: str, digest: str | None, *, workload: str = "camera", waiting: str | None = None) -> dict:
    container: dict[str, Any] = {
        "name": "app",
        "image": image,
        "image_id": f"{image.rsplit(':', 1)[0]}@{digest}" if digest else "",
    }
    if waiting:
        container.update(waiting_reason=waiting, message=f"Back-off pulling image {image!r}")
    return {
        "namespace": "vision",
        "name": name,
        "controller": {"kind": "ReplicaSet", "name": workload},
        "containers": [container],
    }


def report(site: str, at: datetime, pods: list[dict], **extra: Any) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "id": str(uuid.uuid4()),
        "site": site,
        "observed_at": at.isoformat().replace("+00:00", "Z"),
        "pods": pods,
        **extra,
    }


def synced(services: Services, digest: str | None = None, *, tag: str = "1.5.0", at: datetime = T0) -> tuple[str, str]:
    """A release of inspection/camera that reached plant-01 (SYNCED); its id and digest."""
    digest = digest or random_digest()
    release_id = push_release(services, tag=tag, digest=digest, at=at)
    move_row(
        services, release_id, "plant-01", SyncState.SYNCED, SyncReason.SYNCED_AFTER_PUSH, at=at + timedelta(minutes=1)
    )
    return release_id, digest


def test_a_report_shows_what_runs_and_signs_the_first_sighting(services: Services, clock: FakeClock) -> None:
    release_id, digest = synced(services)
    clock.advance(minutes=10)
    seen_at = clock.now()
    pods = [pod(f"camera-{n}", f"{LOCAL}/inspection/camera:1.5.0", digest) for n in range(3)]
    pods.append(pod("gateway-0", "mcr.microsoft.com/oss/nginx:1.25", random_digest(), workload="gateway"))
    outcome = accept_report(services, "plant-01", report("plant-01", seen_at, pods))
    assert (outcome.running, outcome.drift, outcome.receipts) == (1, 0, 1)

    view = runtime_view(site_runtime(services, "plant-01"))
    [running] = view["running"]  # the nginx image is not from an approved repository: not acrsync's
    assert running["release_id"] == release_id and running["digest"] == digest and running["tags"] == ["1.5.0"]
    assert running["pods"] == 3 and running["workloads"] == [
        {"namespace": "vision", "kind": "ReplicaSet", "name": "camera", "pods": 3}
    ]
    assert running["first_seen_at"] == seen_at.isoformat() and running["source"] == "site-agent"
    assert view["health"]["last_report_at"] == seen_at.isoformat()

    row = services.store.get_site_sync(release_id, "plant-01").value
    assert (row.state, row.running_since, row.running_pods) == (SyncState.SYNCED, seen_at, 3)
    [record] = [e for e in services.store.list_evidence(release_id, site="plant-01") if e.details.get("running")]
    assert record.source is EvidenceSource.SITE_REPORT and RECEIPT_DETAIL in record.details

    bundle = evidence_bundle(services, release_id)
    verified = verify_bundle(json.loads(json.dumps(bundle)))
    assert verified.receipts == 1
    statement = json.loads(_payload(bundle["receipts"][0]))
    predicate = statement["predicate"]
    assert predicate["state"] == RUNNING_STATE and predicate["site"] == "plant-01"
    assert predicate["observed_at"] == seen_at.isoformat().replace("+00:00", "Z")
    assert predicate["running"] == {"pods": 3, "workloads": ["vision/ReplicaSet/camera"]}

    # Seen again later with more pods: the row follows, no second receipt.
    clock.advance(minutes=5)
    more = [pod(f"camera-{n}", f"{LOCAL}/inspection/camera:1.5.0", digest) for n in range(5)]
    again = accept_report(services, "plant-01", report("plant-01", clock.now(), more))
    assert again.receipts == 0
    row = services.store.get_site_sync(release_id, "plant-01").value
    assert (row.running_since, row.running_pods, row.receipt_sequence) == (seen_at, 5, 1)
    [running] = runtime_view(site_runtime(services, "plant-01"))["running"]
    assert running["first_seen_at"] == seen_at.isoformat() and running["pods"] == 5


def test_a_resent_report_changes_nothing(services: Services, clock: FakeClock) -> None:
    _, digest = synced(services)
    body = report("plant-01", clock.now(), [pod("camera-0", f"{LOCAL}/inspection/camera:1.5.0", digest)])
    first = accept_report(services, "plant-01", body)
    etag = services.store.get_site_runtime("plant-01").etag
    clock.advance(minutes=1)
    second = accept_report(services, "plant-01", json.loads(json.dumps(body)))
    assert not first.duplicate and second.duplicate
    assert services.store.get_site_runtime("plant-01").etag == etag


def test_a_digest_no_release_knows_is_drift(services: Services, clock: FakeClock) -> None:
    synced(services)
    unknown = random_digest()
    outcome = accept_report(
        services,
        "plant-01",
        report("plant-01", clock.now(), [pod("camera-0", f"{LOCAL}/inspection/camera:hotfix", unknown)]),
    )
    assert outcome.drift == 1
    [running] = runtime_view(site_runtime(services, "plant-01"))["running"]
    assert running["digest"] == unknown and running["release_id"] is None and running["tags"] == ["hotfix"]


def test_pods_that_stop_leave_the_row_with_none_running(services: Services, clock: FakeClock) -> None:
    release_id, digest = synced(services)
    accept_report(
        services,
        "plant-01",
        report("plant-01", clock.now(), [pod("camera-0", f"{LOCAL}/inspection/camera:1.5.0", digest)]),
    )
    clock.advance(minutes=5)
    accept_report(services, "plant-01", report("plant-01", clock.now(), []))
    row = services.store.get_site_sync(release_id, "plant-01").value
    assert row.running_pods == 0 and row.running_since == T0  # when it first ran stays on record
    assert runtime_view(site_runtime(services, "plant-01"))["running"] == []
    summaries = [
        e.summary for e in services.store.list_evidence(release_id, site="plant-01") if e.details.get("running")
    ]
    assert summaries == ["running in 1 pod(s)", "no longer running"]


def test_a_buffered_older_report_adds_history_without_undoing_a_newer_one(services: Services, clock: FakeClock) -> None:
    _, old_digest = synced(services, tag="1.4.0")
    new_id, new_digest = synced(services, tag="1.5.0", at=T0 + timedelta(seconds=5))
    clock.advance(hours=2)
    newer = report("plant-01", clock.now(), [pod("camera-0", f"{LOCAL}/inspection/camera:1.5.0", new_digest)])
    older = report(
        "plant-01",
        clock.now() - timedelta(hours=1),
        [
            pod("camera-0", f"{LOCAL}/inspection/camera:1.5.0", new_digest),
            pod("camera-1", f"{LOCAL}/inspection/camera:1.4.0", old_digest),
        ],
    )
    accept_report(services, "plant-01", newer)
    accept_report(services, "plant-01", older)  # sent later: it sat in the reporter's buffer
    running = runtime_view(site_runtime(services, "plant-01"))["running"]
    assert [r["digest"] for r in running] == [new_digest]  # 1.4.0 stopped before the newer report
    assert running[0]["first_seen_at"] == (clock.now() - timedelta(hours=1)).isoformat()
    assert running[0]["release_id"] == new_id


def test_pull_errors_are_shown_and_announced_once(services: Services, clock: FakeClock) -> None:
    sink: CountingSink = services.events  # type: ignore[assignment]
    image = f"{LOCAL}/inspection/camera:1.6.0"
    failing = [pod("camera-0", image, None, waiting="ImagePullBackOff")]
    accept_report(services, "plant-01", report("plant-01", clock.now(), failing))
    clock.advance(minutes=5)
    accept_report(services, "plant-01", report("plant-01", clock.now(), failing))
    [error] = runtime_view(site_runtime(services, "plant-01"))["pull_errors"]
    assert error["image"] == image and error["reason"] == "ImagePullBackOff" and error["source"] == "site-agent"
    assert error["first_seen_at"] == T0.isoformat() and error["last_seen_at"] == clock.now().isoformat()
    announced = [e for e in sink.events if e.type is OutboundEventType.SITE_PULL_FAILED]
    assert len(announced) == 1 and announced[0].data["image"] == image and announced[0].data["site"] == "plant-01"


def test_a_site_running_an_old_digest_long_after_a_newer_one_arrived_is_outdated(
    services: Services, clock: FakeClock
) -> None:
    sink: CountingSink = services.events  # type: ignore[assignment]
    old_id, old_digest = synced(services, tag="1.4.0")
    new_id, _ = synced(services, tag="1.5.0", at=T0 + timedelta(minutes=2))
    running_old = [pod("camera-0", f"{LOCAL}/inspection/camera:1.4.0", old_digest)]
    clock.advance(hours=1)
    accept_report(services, "plant-01", report("plant-01", clock.now(), running_old))
    assert not [e for e in sink.events if e.type is OutboundEventType.SITE_OUTDATED]  # within the policy (24 h)
    clock.advance(hours=24)
    accept_report(services, "plant-01", report("plant-01", clock.now(), running_old))
    clock.advance(minutes=5)
    accept_report(services, "plant-01", report("plant-01", clock.now(), running_old))
    [event] = [e for e in sink.events if e.type is OutboundEventType.SITE_OUTDATED]
    assert event.data["running_release_id"] == old_id and event.data["held_release_id"] == new_id
    assert event.event_id == f"plant-01:outdated:inspection/camera:{old_digest}:{new_id}"
    assert event.data["held"] is True and event.data["held_state"] == "SYNCED"


def test_a_site_running_an_old_digest_while_a_newer_one_it_should_hold_never_came_is_outdated(
    services: Services, clock: FakeClock
) -> None:
    sink: CountingSink = services.events  # type: ignore[assignment]
    _, old_digest = synced(services, tag="1.4.0")
    stuck = push_release(services, tag="1.5.0", digest=random_digest(), at=T0 + timedelta(minutes=2))
    move_row(services, stuck, "plant-01", SyncState.STALE, SyncReason.WINDOW_MISSED, at=T0 + timedelta(hours=3))
    clock.advance(hours=25)
    accept_report(
        services,
        "plant-01",
        report("plant-01", clock.now(), [pod("camera-0", f"{LOCAL}/inspection/camera:1.4.0", old_digest)]),
    )
    [event] = [e for e in sink.events if e.type is OutboundEventType.SITE_OUTDATED]
    assert (
        event.data["held_release_id"] == stuck and event.data["held"] is False and event.data["held_state"] == "STALE"
    )


def test_a_tls_certificate_near_expiry_is_shown_and_announced(services: Services, clock: FakeClock) -> None:
    sink: CountingSink = services.events  # type: ignore[assignment]
    expires = clock.now() + timedelta(days=9)
    checks = [{"repository": "inspection/camera", "digest": random_digest(), "result": "failed", "detail": "blob 404"}]
    body = report("plant-01", clock.now(), [], registry={"tls_expires_at": expires.isoformat(), "checks": checks})
    accept_report(services, "plant-01", body)
    health = runtime_view(site_runtime(services, "plant-01"))["health"]
    assert health["tls_expires_at"] == expires.isoformat() and health["disconnected_pull"] == "failed"
    assert "blob 404" in health["disconnected_pull_failures"][0]
    [event] = [e for e in sink.events if e.type is OutboundEventType.SITE_TLS_EXPIRING]
    assert event.data["days_left"] == 9
    assert announce_expiring_tls(services) == 0  # announced once for that expiry date


def test_the_sweep_announces_a_certificate_that_came_close_to_expiry_without_a_new_report(
    services: Services, clock: FakeClock
) -> None:
    sink: CountingSink = services.events  # type: ignore[assignment]
    expires = clock.now() + timedelta(days=45)  # beyond the 30-day horizon when reported
    accept_report(
        services, "plant-01", report("plant-01", clock.now(), [], registry={"tls_expires_at": expires.isoformat()})
    )
    assert announce_expiring_tls(services) == 0
    clock.advance(days=20)  # the agent stopped reporting; the certificate kept ageing
    assert announce_expiring_tls(services) == 1 and announce_expiring_tls(services) == 0
    [event] = [e for e in sink.events if e.type is OutboundEventType.SITE_TLS_EXPIRING]
    assert event.data["site"] == "plant-01" and event.data["days_left"] == 25


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda b: b.update(id="x"), "INVALID_REPORT_ID"),
        (lambda b: b.update(site="plant-02"), "SITE_MISMATCH"),
        (lambda b: b.update(schema="v0"), "INVALID_REPORT"),
        (lambda b: b.update(observed_at="yesterday"), "INVALID_REPORT"),
        (lambda b: b.update(observed_at=(T0 + timedelta(hours=1)).isoformat()), "REPORT_FROM_THE_FUTURE"),
        (lambda b: b.update(observed_at=(T0 - timedelta(days=8)).isoformat()), "REPORT_TOO_OLD"),
        (lambda b: b["pods"][0].update(namespace="Not A Name"), "INVALID_REPORT"),
        (lambda b: b["pods"][0]["containers"][0].update(image="has space"), "INVALID_REPORT"),
        (lambda b: b["pods"].extend([{}] * 3000), "INVALID_REPORT"),
        (
            lambda b: b.update(registry={"checks": [{"repository": "a", "digest": "sha256:1", "result": "ok"}]}),
            "INVALID_REPORT",
        ),
    ],
)
def test_a_bad_report_is_refused_and_changes_nothing(
    services: Services, clock: FakeClock, change: Any, code: str
) -> None:
    body = report("plant-01", clock.now(), [pod("camera-0", f"{LOCAL}/inspection/camera:1.5.0", random_digest())])
    change(body)
    with pytest.raises(InvalidInput) as caught:
        accept_report(services, "plant-01", body)
    assert caught.value.code == code
    assert site_runtime(services, "plant-01").updated_at is None


def _payload(envelope: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(envelope["payload"]).decode()
