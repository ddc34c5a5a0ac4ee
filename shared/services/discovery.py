"""Discovery: a sites file drafted from what ARM knows about a parent registry's connected registries.

Each connected registry becomes a site: its name (lower case, ``_`` as ``-``), its ARM id as
``connected_registry``, the repositories its sync token's scope map grants (``repositories/<repo>/content/read``)
as the approved repositories, and its schedule, window and TTL from ``parent.syncProperties``. With the
Arc clusters of a resource group, a site also gets the ``cluster_id`` of the cluster that runs the
connected registry extension under the connected registry's name (the extension's name, else the
cluster's): ARM does not link a connected registry to the cluster hosting it, so the match is by name and
the draft says so. What ARM does not know (ring, owner, criticality, tag policy) is left at the defaults
for a person to fill in.

The draft always loads with :func:`shared.services.sites_file.load_sites_file`: a connected registry that
cannot be a site (a name that is not a site name, a scope map that grants nothing or cannot be read) is
listed as a comment instead, and values outside the connected-registry limits are brought inside them with
a comment saying so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import yaml

from shared.domain.inventory import RegistryState
from shared.domain.model import MAX_MESSAGE_TTL, MAX_SYNC_WINDOW, MIN_MESSAGE_TTL, MIN_SYNC_WINDOW
from shared.domain.names import validate_login_server, validate_site_name
from shared.domain.observations import ConnectedRegistryState
from shared.domain.windows import CONTINUOUS_SCHEDULE, format_duration, validate_schedule
from shared.domain.workloads import RegistryCluster
from shared.errors import InvalidInput, NotFound, UpstreamRejected
from shared.ports import ArmInventory
from shared.services.preflight import scope_read_problem
from shared.services.sites_file import load_sites_file

# What sites files accept as a repository pattern (shared.services.sites_file).
_PATTERN = re.compile(r"[a-z0-9._/*?\[\]-]+")


@dataclass(frozen=True)
class DiscoveredSite:
    """One connected registry and the site drafted from it (``entry`` is ``None`` when it cannot be one)."""

    connected_registry: ConnectedRegistryState
    name: str
    repositories: tuple[str, ...]
    notes: tuple[str, ...]
    entry: dict[str, Any] | None


@dataclass(frozen=True)
class Discovery:
    registry: RegistryState
    sites: tuple[DiscoveredSite, ...]


def discover(arm: ArmInventory, registry_id: str, *, clusters: Sequence[RegistryCluster] | None = None) -> Discovery:
    """Read the registry, its connected registries (all pages) and each one's sync scope; with
    ``clusters`` (the Arc clusters running the connected registry extension), match each site's.

    Raises:
        NotFound: no such registry. UpstreamUnavailable: ARM cannot be read. UpstreamRejected.
    """
    registry = arm.get_registry(registry_id)
    seen: set[str] = set()
    found = []
    for cr in arm.list_connected_registries(registry_id):
        drafted = _draft(arm, cr, seen)
        found.append(_with_cluster(drafted, clusters) if clusters is not None else drafted)
    return Discovery(registry, tuple(found))


def _with_cluster(found: DiscoveredSite, clusters: Sequence[RegistryCluster]) -> DiscoveredSite:
    if found.entry is None:
        return found
    wanted = {found.connected_registry.name.lower(), found.name}
    matches = [c for c in clusters if c.extension_name.lower() in wanted] or [
        c for c in clusters if c.name.lower() in wanted
    ]
    if len(matches) != 1:
        why = "no Arc cluster" if not matches else f"{len(matches)} Arc clusters"
        note = f"{why} with a connected registry extension named like it: add cluster_id by hand"
        return replace(found, notes=(*found.notes, note))
    [cluster] = matches
    note = f"cluster_id matched by name ({cluster.name}): ARM does not link the two, check it"
    return replace(found, entry={**found.entry, "cluster_id": cluster.cluster_id}, notes=(*found.notes, note))


def _draft(arm: ArmInventory, cr: ConnectedRegistryState, seen: set[str]) -> DiscoveredSite:
    notes: list[str] = []
    name = cr.name.lower().replace("_", "-")
    repositories: tuple[str, ...] = ()
    unreadable: str | None = None
    if cr.token_id:
        try:
            repositories = arm.get_sync_scope(cr.token_id).repository_patterns
        except (NotFound, UpstreamRejected) as exc:
            unreadable = scope_read_problem(cr.token_id, exc)
    else:
        unreadable = "the connected registry has no sync token"
    unusable = [pattern for pattern in repositories if not _PATTERN.fullmatch(pattern)]
    if unusable:
        notes.append(f"left out patterns a sites file cannot hold: {', '.join(unusable)}")
    repositories = tuple(pattern for pattern in repositories if pattern not in unusable)

    def skipped(why: str) -> DiscoveredSite:
        return DiscoveredSite(cr, name, repositories, (*notes, why), None)

    try:
        validate_site_name(name)
    except InvalidInput:
        return skipped(f"{cr.name!r} cannot be a site name (a-z, 0-9, inner '-')")
    if name in seen:
        return skipped(f"another connected registry already became site {name}")
    if unreadable is not None:
        return skipped(unreadable)
    if not repositories:
        return skipped("its scope map grants no repository")
    seen.add(name)
    entry: dict[str, Any] = {"name": name, "connected_registry": cr.resource_id, "repositories": list(repositories)}
    entry.update(_sync_settings(cr, notes))
    return DiscoveredSite(cr, name, repositories, tuple(notes), entry)


def _sync_settings(cr: ConnectedRegistryState, notes: list[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    schedule = (cr.schedule or "").strip()
    if schedule and schedule != CONTINUOUS_SCHEDULE:
        try:
            validate_schedule(schedule)
        except InvalidInput:
            notes.append(f"schedule {schedule!r} is not a 5-field cron: left out (continuous)")
            schedule = ""
    if schedule and schedule != CONTINUOUS_SCHEDULE:
        settings["schedule"] = schedule
        window = cr.sync_window
        if window is None:
            window = MIN_SYNC_WINDOW
            notes.append(f"ARM has no syncWindow: {format_duration(window)} assumed")
        clamped = _clamp(window, MIN_SYNC_WINDOW, MAX_SYNC_WINDOW)
        if clamped != window:
            notes.append(
                f"syncWindow {format_duration(window)} is outside PT1H to P7D: {format_duration(clamped)} used"
            )
        settings["sync_window"] = format_duration(clamped)
    if cr.message_ttl is None:
        notes.append("ARM has no messageTtl: the default applies")
    else:
        ttl = _clamp(cr.message_ttl, MIN_MESSAGE_TTL, MAX_MESSAGE_TTL)
        if ttl != cr.message_ttl:
            notes.append(
                f"messageTtl {format_duration(cr.message_ttl)} is outside P1D to P90D: {format_duration(ttl)} used"
            )
        settings["message_ttl"] = format_duration(ttl)
    return settings


def _clamp(value: timedelta, low: timedelta, high: timedelta) -> timedelta:
    return max(low, min(high, value))


# -- output ----------------------------------------------------------------------------------------


def discovery_rows(discovery: Discovery) -> list[dict[str, Any]]:
    """One row per connected registry, for a listing."""
    rows = []
    for found in discovery.sites:
        cr = found.connected_registry
        rows.append(
            {
                "connected_registry": cr.name,
                "site": found.name if found.entry is not None else None,
                "mode": cr.mode,
                "activation": "Active" if cr.active else "Inactive",
                "connection_state": cr.connection_state.value,
                "schedule": cr.schedule,
                "sync_window": format_duration(cr.sync_window) if cr.sync_window is not None else None,
                "message_ttl": format_duration(cr.message_ttl) if cr.message_ttl is not None else None,
                "repositories": list(found.repositories),
                "notes": list(found.notes),
            }
        )
    return rows


def discovery_yaml(discovery: Discovery, *, registry_id: str, generated_at: datetime) -> str:
    """The draft sites file (checked to load before it is returned)."""
    lines = [
        f"# Sites discovered from {registry_id}",
        f"# by `acrsync sites discover` at {generated_at.isoformat(timespec='seconds')}.",
        "# Review before `acrsync sites import`: ring, owner, critical and tags are not in ARM; repositories",
        "# are what each sync token's scope map grants, so narrow them to what each site should run.",
    ]
    login_server = discovery.registry.login_server
    if login_server:
        try:
            lines.append(f"registry: {validate_login_server(login_server)}")
        except InvalidInput:
            lines.append(f"# registry: {login_server} (not a login server a sites file accepts)")
    entries = [found for found in discovery.sites if found.entry is not None]
    lines.append("sites:" if entries else "sites: []")
    for found in discovery.sites:
        if found.entry is None:
            lines.append(f"  # skipped {found.connected_registry.name}: {'; '.join(found.notes)}")
            continue
        for note in found.notes:
            lines.append(f"  # {found.name}: {note}")
        block = yaml.safe_dump([found.entry], sort_keys=False, default_flow_style=False, allow_unicode=True)
        lines.extend(f"  {line}" for line in block.splitlines())
    text = "\n".join(lines) + "\n"
    load_sites_file(text)  # a draft that does not load is a bug here, not the reader's problem
    return text
