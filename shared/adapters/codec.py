"""One serialisation of domain values for every store adapter, so all backends hold the same
documents and enforce the same size limit.

Each entity is stored as one JSON document plus the few top-level columns an adapter filters on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.annotations import Annotations
from shared.domain.content import Blob, ReleaseContent
from shared.domain.links import LinkRate, RateSource, Transfer
from shared.domain.model import (
    DEFAULT_STALE_AFTER_WINDOWS,
    ArtifactKind,
    Evidence,
    Release,
    Site,
    SiteSync,
    TagPolicy,
)
from shared.domain.states import EvidenceSource, SyncReason, SyncState
from shared.errors import EntityTooLarge, InvalidInput

# Table Storage caps an Edm.String at 64 KiB of UTF-16, i.e. 32,768 UTF-16 code units. Every backend
# enforces this one limit on a document so an entity that fits locally also fits in Azure.
MAX_DOCUMENT_UTF16_UNITS = 32_000

# Characters Table Storage forbids in PartitionKey/RowKey (plus '%', our escape character).
_FORBIDDEN_KEY_CHARS = {"/", "\\", "#", "?", "%"} | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


def encode_key(text: str) -> str:
    """Reversibly escape characters Table keys forbid (``%XX``; all are below U+00A0); other text, unicode
    included, is kept so keys stay readable."""
    out = []
    for ch in text:
        if ch in _FORBIDDEN_KEY_CHARS:
            out.append(f"%{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def decode_key(key: str) -> str:
    out, i = [], 0
    while i < len(key):
        if key[i] == "%":
            out.append(chr(int(key[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def inverted_time_key(at: datetime) -> str:
    """A fixed-width key that sorts newest first."""
    micros = (at - _EPOCH) // timedelta(microseconds=1)  # exact: float timestamps can be off by 1 µs
    return f"{(10**17 - micros):017d}"


def dump_document(doc: dict[str, Any], *, what: str) -> str:
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    units = len(text.encode("utf-16-le")) // 2
    if units > MAX_DOCUMENT_UTF16_UNITS:
        raise EntityTooLarge(f"{what} is {units} UTF-16 units; the limit is {MAX_DOCUMENT_UTF16_UNITS}")
    return text


def load_document(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise InvalidInput("CORRUPT_DOCUMENT", "stored document is not a JSON object")
    return value


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _td(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def _parse_td(value: float | None) -> timedelta | None:
    return timedelta(seconds=value) if value is not None else None


def site_to_doc(site: Site) -> dict[str, Any]:
    return {
        "name": site.name,
        "ring": site.ring,
        "critical": site.critical,
        "owner": site.owner,
        "repositories": list(site.repositories),
        "tags": site.tag_policy.as_dict(),
        "connected_registry": site.connected_registry,
        "schedule": site.schedule,
        "sync_window_s": _td(site.sync_window),
        "message_ttl_s": _td(site.message_ttl),
        "endpoint": site.endpoint,
        "stale_after_windows": site.stale_after_windows,
        "cluster_id": site.cluster_id,
        "log_analytics_workspace_id": site.log_analytics_workspace_id,
        "reporter": site.reporter,
        "position": site.position,
        "bandwidth_bps": site.bandwidth_bps,
    }


def site_from_doc(doc: dict[str, Any]) -> Site:
    tags = doc.get("tags") or {}
    return Site(
        name=doc["name"],
        ring=doc["ring"],
        critical=doc["critical"],
        owner=doc.get("owner"),
        repositories=tuple(doc["repositories"]),
        tag_policy=TagPolicy(
            include=tuple(tags.get("include", ())),
            exclude=tuple(tags.get("exclude", ())),
            semver_only=bool(tags.get("semver_only", False)),
        ),
        connected_registry=doc.get("connected_registry"),
        schedule=doc.get("schedule"),
        sync_window=_parse_td(doc.get("sync_window_s")),
        message_ttl=_parse_td(doc["message_ttl_s"]) or timedelta(days=2),
        endpoint=doc.get("endpoint"),
        stale_after_windows=int(doc.get("stale_after_windows", DEFAULT_STALE_AFTER_WINDOWS)),
        cluster_id=doc.get("cluster_id"),
        log_analytics_workspace_id=doc.get("log_analytics_workspace_id"),
        reporter=bool(doc.get("reporter", False)),
        position=int(doc["position"]) if doc.get("position") is not None else None,
        bandwidth_bps=float(doc["bandwidth_bps"]) if doc.get("bandwidth_bps") is not None else None,
    )


def release_to_doc(release: Release) -> dict[str, Any]:
    return {
        "registry": release.registry,
        "repository": release.repository,
        "digest": release.digest,
        "pushed_at": _dt(release.pushed_at),
        "tags": sorted(release.tags),
        "media_type": release.media_type,
        "size": release.size,
        "actor": release.actor,
        "kind": release.kind.value,
        "source_event_ids": list(release.source_event_ids),
        "withdrawn_at": _dt(release.withdrawn_at),
        "counts": {state.value: n for state, n in sorted(release.counts.items())},
        "counts_as_of": _dt(release.counts_as_of),
        "next_due_at": _dt(release.next_due_at),
        "receipt_sequence": release.receipt_sequence,
        "receipt_head": release.receipt_head,
        "checkpoint": release.checkpoint,
        "indexed": release.indexed,
        "ledger_seeded": release.ledger_seeded,
        "content": _content_to_doc(release.content),
        "content_unknown": release.content_unknown,
    }


def _content_to_doc(content: ReleaseContent | None) -> dict[str, Any] | None:
    if content is None:
        return None
    return {
        "blobs": [[blob.digest, blob.size] for blob in content.blobs],
        "platforms": list(content.platforms),
        "layers": content.layers,
        "annotations": dict(content.annotations),
    }


def _content_from_doc(doc: dict[str, Any] | None) -> ReleaseContent | None:
    if not doc:
        return None
    blobs = tuple(Blob(str(digest), int(size)) for digest, size in doc.get("blobs", ()))
    annotations = {str(k): str(v) for k, v in (doc.get("annotations") or {}).items()}
    return ReleaseContent(blobs, tuple(doc.get("platforms", ())), int(doc.get("layers", 0)), annotations)


def dump_annotations(release: Release) -> str | None:
    """A release's annotations as their own document (Table Storage keeps them in a property of their
    own, so they never crowd the header's), or ``None`` when it has none."""
    if release.annotations is None:
        return None
    return dump_document(release.annotations.record(), what=f"annotations of release {release.release_id}")


def dump_release(release: Release) -> str:
    """The release with its annotations in one document (SQLite), each part held to Table Storage's limit."""
    doc = release_to_doc(release)
    dump_document(doc, what=f"release {release.release_id}")
    annotations = dump_annotations(release)
    if annotations is not None:
        doc["annotations"] = load_document(annotations)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def release_from_doc(doc: dict[str, Any]) -> Release:
    return Release(
        registry=doc["registry"],
        repository=doc["repository"],
        digest=doc["digest"],
        pushed_at=_parse_dt(doc["pushed_at"]),  # type: ignore[arg-type]
        tags=frozenset(doc.get("tags", ())),
        media_type=doc.get("media_type"),
        size=doc.get("size"),
        actor=doc.get("actor"),
        kind=ArtifactKind(doc.get("kind", "IMAGE")),
        source_event_ids=tuple(doc.get("source_event_ids", ())),
        withdrawn_at=_parse_dt(doc.get("withdrawn_at")),
        counts={SyncState(k): int(v) for k, v in (doc.get("counts") or {}).items()},
        counts_as_of=_parse_dt(doc.get("counts_as_of")),
        next_due_at=_parse_dt(doc.get("next_due_at")),
        receipt_sequence=int(doc.get("receipt_sequence", 0)),
        receipt_head=doc.get("receipt_head"),
        checkpoint=doc.get("checkpoint"),
        indexed=bool(doc.get("indexed", False)),
        ledger_seeded=bool(doc.get("ledger_seeded", False)),
        content=_content_from_doc(doc.get("content")),
        content_unknown=doc.get("content_unknown"),
        annotations=Annotations.from_record(doc["annotations"]) if doc.get("annotations") else None,
    )


def site_sync_to_doc(row: SiteSync) -> dict[str, Any]:
    return {
        "release_id": row.release_id,
        "site": row.site,
        "repository": row.repository,
        "digest": row.digest,
        "pushed_at": _dt(row.pushed_at),
        "state": row.state.value,
        "reason": row.reason.value if row.reason else None,
        "updated_at": _dt(row.updated_at),
        "queued_at": _dt(row.queued_at),
        "expected_ready_at": _dt(row.expected_ready_at),
        "synced_at": _dt(row.synced_at),
        "verified_at": _dt(row.verified_at),
        "stale_at": _dt(row.stale_at),
        "evidence_source": row.evidence_source.value if row.evidence_source else None,
        "checks": row.checks,
        "next_check_at": _dt(row.next_check_at),
        "receipt_sequence": row.receipt_sequence,
        "receipt_head": row.receipt_head,
        "stale_incidents": row.stale_incidents,
        "window_missed": row.window_missed,
        "in_ledger": row.in_ledger,
        "running_since": _dt(row.running_since),
        "running_pods": row.running_pods,
        "offline_since": _dt(row.offline_since),
        "transfer": _transfer_to_doc(row.transfer),
    }


def _transfer_to_doc(transfer: Transfer | None) -> dict[str, Any] | None:
    if transfer is None:
        return None
    rate = transfer.rate
    return {
        "blobs": list(transfer.blobs),
        "bps": rate.bits_per_second if rate else None,
        "rate_source": rate.source.value if rate else None,
    }


def _transfer_from_doc(doc: dict[str, Any] | None) -> Transfer | None:
    if not doc:
        return None
    rate = LinkRate(float(doc["bps"]), RateSource(doc["rate_source"])) if doc.get("bps") else None
    return Transfer(tuple(int(size) for size in doc.get("blobs", ())), rate)


def site_sync_from_doc(doc: dict[str, Any]) -> SiteSync:
    return SiteSync(
        release_id=doc["release_id"],
        site=doc["site"],
        repository=doc["repository"],
        digest=doc["digest"],
        pushed_at=_parse_dt(doc["pushed_at"]),  # type: ignore[arg-type]
        state=SyncState(doc["state"]),
        reason=SyncReason(doc["reason"]) if doc.get("reason") else None,
        updated_at=_parse_dt(doc["updated_at"]),  # type: ignore[arg-type]
        queued_at=_parse_dt(doc.get("queued_at")),
        expected_ready_at=_parse_dt(doc.get("expected_ready_at")),
        synced_at=_parse_dt(doc.get("synced_at")),
        verified_at=_parse_dt(doc.get("verified_at")),
        stale_at=_parse_dt(doc.get("stale_at")),
        evidence_source=EvidenceSource(doc["evidence_source"]) if doc.get("evidence_source") else None,
        checks=int(doc.get("checks", 0)),
        next_check_at=_parse_dt(doc.get("next_check_at")),
        receipt_sequence=int(doc.get("receipt_sequence", 0)),
        receipt_head=doc.get("receipt_head"),
        stale_incidents=int(doc.get("stale_incidents", 0)),
        window_missed=bool(doc.get("window_missed", False)),
        running_since=_parse_dt(doc.get("running_since")),
        running_pods=int(doc.get("running_pods", 0)),
        in_ledger=bool(doc.get("in_ledger", False)),
        offline_since=_parse_dt(doc.get("offline_since")),
        transfer=_transfer_from_doc(doc.get("transfer")),
    )


def evidence_to_doc(ev: Evidence) -> dict[str, Any]:
    return {
        "release_id": ev.release_id,
        "site": ev.site,
        "source": ev.source.value,
        "observed_at": _dt(ev.observed_at),
        "recorded_at": _dt(ev.recorded_at),
        "summary": ev.summary,
        "state_from": ev.state_from.value if ev.state_from else None,
        "state_to": ev.state_to.value if ev.state_to else None,
        "reason": ev.reason.value if ev.reason else None,
        "observed_digest": ev.observed_digest,
        "details": dict(ev.details),
    }


def evidence_from_doc(doc: dict[str, Any]) -> Evidence:
    return Evidence(
        release_id=doc["release_id"],
        site=doc["site"],
        source=EvidenceSource(doc["source"]),
        observed_at=_parse_dt(doc["observed_at"]),  # type: ignore[arg-type]
        recorded_at=_parse_dt(doc["recorded_at"]),  # type: ignore[arg-type]
        summary=doc["summary"],
        state_from=SyncState(doc["state_from"]) if doc.get("state_from") else None,
        state_to=SyncState(doc["state_to"]) if doc.get("state_to") else None,
        reason=SyncReason(doc["reason"]) if doc.get("reason") else None,
        observed_digest=doc.get("observed_digest"),
        details=dict(doc.get("details") or {}),
    )


def content_etag(text: str) -> str:
    """A strong ETag derived from a document (used where the backend has no native ETag)."""
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def encode_continuation(payload: dict[str, Any], *, filters: dict[str, Any]) -> str:
    """An opaque continuation token bound to the filters it was issued for."""
    body = {"p": payload, "f": _filter_hash(filters)}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_continuation(token: str, *, filters: dict[str, Any]) -> dict[str, Any]:
    """Raises: InvalidInput(INVALID_CONTINUATION) for a token not issued for these filters."""
    try:
        if len(token) > MAX_CONTINUATION_CHARS:
            raise ValueError("too long")
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if body["f"] != _filter_hash(filters) or not isinstance(body["p"], dict):
            raise ValueError("filter mismatch")
        return body["p"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidInput("INVALID_CONTINUATION", "the continuation token is not valid for this query") from exc


def continuation_after(token: str | None, *, filters: dict[str, Any]) -> str | None:
    """The key a continuation token resumes after, ``None`` for the first page.

    The token is not signed, so what it carries is checked as a key acrsync could have issued: printable
    ASCII of a bounded length (a forged one is refused, never sent to the store).

    Raises:
        InvalidInput: ``INVALID_CONTINUATION``.
    """
    if token is None:
        return None
    after = decode_continuation(token, filters=filters).get("after")
    if not isinstance(after, str) or not after or len(after) > MAX_KEY_CHARS or not _PRINTABLE_KEY.fullmatch(after):
        raise InvalidInput("INVALID_CONTINUATION", "the continuation token is not valid for this query")
    return after


# Keys acrsync writes are ASCII (hex ids, encoded names, ISO times); a token cannot be longer than a page's key.
MAX_KEY_CHARS = 1024
MAX_CONTINUATION_CHARS = 4 * MAX_KEY_CHARS
_PRINTABLE_KEY = re.compile(r"[\x20-\x7e]+")


def _filter_hash(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]
