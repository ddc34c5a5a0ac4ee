"""What `-o table` and `-o tsv` show per command: chosen columns, fixed per command (a script's
`cut -f3` keeps meaning the same field), compact UTC times, short digests; so an ordinary table fits
120 columns. `json` and `yaml` show everything, and `--query` picks from everything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

READY = ("SYNCED", "VERIFIED")
PENDING = ("PENDING", "WAITING_FOR_WINDOW")
BLOCKED = ("STALE", "FAILED", "WITHDRAWN")


def compact_time(value: Any) -> str:
    """``2026-11-24T22:00:00+00:00`` → ``11-24 22:00Z`` (UTC); empty for none."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value)
    return moment.strftime("%m-%d %H:%MZ")


def format_bytes(count: int | None) -> str:
    """``199001547`` → ``199.0 MB``, ``0`` → ``0 B`` (decimal units, as link rates are)."""
    if not count:
        return "0 B" if count == 0 else "—"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def short_digest(digest: Any) -> str:
    return str(digest or "").removeprefix("sha256:")[:12]


def _count(counts: dict[str, int], states: tuple[str, ...]) -> int:
    return sum(int(counts.get(state, 0)) for state in states)


def releases_rows(releases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for release in releases:
        counts = release.get("counts") or {}
        in_scope = sum(int(n) for state, n in counts.items() if state != "SKIPPED")
        rows.append(
            {
                "repository": release.get("repository"),
                "tags": ",".join(release.get("tags") or [])[:24],
                "digest": short_digest(release.get("digest")),
                "pushed": compact_time(release.get("pushed_at")),
                "ready": f"{_count(counts, READY)}/{in_scope}",
                "pending": _count(counts, PENDING),
                "blocked": _count(counts, BLOCKED),
            }
        )
    return rows


def release_rows(release: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "site": row.get("site"),
            "ring": row.get("ring"),
            "state": row.get("state"),
            "reason": row.get("reason"),
            "eta": row_eta(row),
            # When the digest first reached the site (synced or verified: the state says which).
            "arrived": compact_time(min((t for t in (row.get("synced_at"), row.get("verified_at")) if t), default="")),
            "pods": row.get("running_pods") or 0,
            "needs": format_bytes(row.get("bytes_needed")) if row.get("bytes_needed") is not None else "",
        }
        for row in release.get("sites") or []
    ]


def row_eta(row: dict[str, Any]) -> str:
    """A site's expected ready time while it is on its way; ``offline since 11-24 17:05Z`` (no estimate)
    while its connected registry is offline."""
    if row.get("offline_since") and row.get("state") in (*PENDING, "STALE"):
        return f"offline since {compact_time(row['offline_since'])}"
    return compact_time(row.get("expected_ready_at")) if row.get("state") in PENDING else ""


def sites_rows(sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for site in sites:
        window = site.get("next_window") or {}
        rows.append(
            {
                "name": site.get("name"),
                "ring": site.get("ring"),
                "critical": bool(site.get("critical")),
                "connection": site.get("connection_state") or "",
                "schedule": site.get("schedule") or "continuous",
                "window": site.get("sync_window") or "",
                "next window": compact_time(window.get("opens_at")),
            }
        )
    return rows


def running_rows(running: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "site": row["site"],
            "repository": row["repository"],
            "digest": short_digest(row["digest"]),
            "release": (row.get("release_id") or "drift")[:12],
            "tags": ",".join(row.get("tags") or []),
            "pods": row["pods"],
            "since": compact_time(row["first_seen_at"]),
            "source": row["source"],
        }
        for row in running
    ]


def site_rows(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """Per repository: the newest release checked there (held) beside the digests running there."""
    held = {entry["repository"]: entry for entry in detail.get("repositories_state") or []}
    running: dict[str, list[dict[str, Any]]] = {}
    for image in detail.get("running") or []:
        running.setdefault(image["repository"], []).append(image)
    rows = []
    for repository in sorted(set(held) | set(running)):
        entry = held.get(repository) or {}
        for image in running.get(repository) or [{}]:
            rows.append(
                {
                    "repository": repository,
                    "held": short_digest(entry.get("digest")),
                    "state": entry.get("state"),
                    "tags": ",".join(entry.get("tags") or []),
                    "running": short_digest(image.get("digest")),
                    "pods": image.get("pods"),
                    "release": (image.get("release_id") or "drift")[:12] if image else None,
                    "since": compact_time(image.get("first_seen_at")),
                }
            )
    return rows


View = Callable[[Any], list[dict[str, Any]]]
