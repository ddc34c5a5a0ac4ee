"""Small builders for domain values used across the test suite (random ids keep tests independent)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.model import Evidence, Release, Site, SiteSync
from shared.domain.states import EvidenceSource, SyncReason, SyncState

T0 = datetime(2026, 11, 24, 9, 41, 12, tzinfo=UTC)
REGISTRY = "contosoacr.azurecr.io"
REGISTRY_TOPIC = (  # the registry of ../shared/samples (tests/fixtures/events)
    "/subscriptions/6d1b7c2e-4a9f-4e3b-8c5d-2f0a9e7b1c43/resourceGroups/rg-contoso-registry"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)


def random_digest() -> str:
    return "sha256:" + hashlib.sha256(secrets.token_bytes(16)).hexdigest()


def make_release(
    repository: str = "inspection/camera",
    *,
    tags: frozenset[str] = frozenset({"1.4.2"}),
    pushed_at: datetime = T0,
    digest: str | None = None,
    event_id: str | None = None,
) -> Release:
    return Release(
        registry=REGISTRY,
        repository=repository,
        digest=digest or random_digest(),
        pushed_at=pushed_at,
        tags=tags,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=1574,
        source_event_ids=(event_id or secrets.token_hex(8),),
    )


def make_row(release: Release, site: str, *, state: SyncState = SyncState.PENDING) -> SiteSync:
    return SiteSync(
        release_id=release.release_id,
        site=site,
        repository=release.repository,
        digest=release.digest,
        pushed_at=release.pushed_at,
        state=state,
        reason=SyncReason.AWAITING_FIRST_CHECK,
        updated_at=release.pushed_at,
        queued_at=release.pushed_at,
    )


def make_evidence(row: SiteSync, *, at: datetime, summary: str = "manifest present", **kw: object) -> Evidence:
    return Evidence(
        release_id=row.release_id,
        site=row.site,
        source=kw.pop("source", EvidenceSource.OCI_PROBE),  # type: ignore[arg-type]
        observed_at=at,
        recorded_at=at + timedelta(seconds=1),
        summary=summary,
        observed_digest=row.digest,
        **kw,  # type: ignore[arg-type]
    )


def make_site(name: str, **kw: object) -> Site:
    kw.setdefault("repositories", ("inspection/*",))
    return Site(name=name, **kw)  # type: ignore[arg-type]


def site_names(count: int, prefix: str = "plant") -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def push_release(
    services: Any,
    repository: str = "inspection/camera",
    tag: str = "1.4.2",
    *,
    digest: str | None = None,
    at: datetime = T0,
) -> str:
    """Deliver an ImagePushed event the way Event Grid does (a fresh event id); returns the release id.

    ``digest`` defaults to a new random one.
    """
    import uuid

    from shared.domain.acr_events import image_pushed_event
    from shared.services.ingest import ingest_event

    event = image_pushed_event(
        event_id=str(uuid.uuid4()),
        topic=REGISTRY_TOPIC,
        registry=REGISTRY,
        repository=repository,
        tag=tag,
        digest=digest or random_digest(),
        at=at,
        size=1574,
    )
    result = ingest_event(services, event)
    assert result.release_id is not None
    return str(result.release_id)


def move_row(
    services: Any,
    release_id: str,
    site: str,
    state: SyncState,
    reason: SyncReason,
    *,
    at: datetime,
    source: EvidenceSource = EvidenceSource.SCHEDULE,
    summary: str | None = None,
    **changes: object,
) -> None:
    """Move one row (with its evidence and the release counters) as a check would; ``changes`` set
    other fields of the row (``expected_ready_at=...``)."""
    from shared.domain.changes import transition
    from shared.services.rows import update_row

    def decide(row: SiteSync) -> Any:
        return transition(row, state, reason, source=source, summary=summary or f"test: {state}", at=at, **changes)

    update_row(services.store, release_id, site, decide)
