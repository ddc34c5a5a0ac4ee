"""``sites.yaml``: the sites acrsync knows, their rings, scopes and sync schedules.

Loading is all-or-nothing: every problem is reported with its line and reason, and a file with
any problem imports nothing. Only a file that says ``simulation: {allow_short_windows: true}``
may use windows and TTLs below the connected-registry limits, and only when the caller (the
local dev mode, simulated or on loopback registries) allows it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import yaml

from shared.domain.model import DEFAULT_MESSAGE_TTL, DEFAULT_STALE_AFTER_WINDOWS, Site, TagPolicy
from shared.domain.names import validate_login_server, validate_site_name
from shared.domain.windows import check_limits, parse_duration, validate_schedule
from shared.errors import InvalidInput
from shared.services.dependencies import Dependencies
from shared.services.ingest import backfill_site

logger = logging.getLogger(__name__)

_TOP_KEYS = {"registry", "sites", "simulation"}
_SITE_KEYS = {
    "name",
    "ring",
    "critical",
    "owner",
    "repositories",
    "tags",
    "schedule",
    "sync_window",
    "message_ttl",
    "connected_registry",
    "endpoint",
    "stale_after_windows",
}
_TAG_KEYS = {"include", "exclude", "semver_only"}
_SIMULATION_KEYS = {"allow_short_windows"}
_PATTERN = re.compile(r"[a-z0-9._/*?\[\]-]+")
_CONNECTED_REGISTRY = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/[^/]+"
    r"/connectedRegistries/[^/]+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SitesFile:
    registry: str | None
    sites: list[Site]
    allow_short_windows: bool = False


class SitesFileError(InvalidInput):
    """Every problem of a sites file, each as ``line N: reason``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("INVALID_SITES_FILE", "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ImportReport:
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    backfilled: dict[str, int]


def load_sites_file(text: str, *, allow_short_windows: bool = False) -> SitesFile:
    """Parse and check a sites file.

    Args:
        text: the YAML text.
        allow_short_windows: whether the caller runs simulated sites, which may use short windows
            when the file asks for them.

    Raises:
        SitesFileError: with every problem found, each naming its line.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise SitesFileError([f"{line}not valid YAML ({getattr(exc, 'problem', None) or 'syntax error'})"]) from exc
    problems: list[str] = []
    if not isinstance(root, yaml.MappingNode):
        raise SitesFileError(["line 1: the file must be a mapping with a 'sites' list"])
    top = _mapping(root, _TOP_KEYS, "the file", problems)
    short = False
    if "simulation" in top:
        simulation = _mapping(top["simulation"], _SIMULATION_KEYS, "simulation", problems)
        short = bool(_scalar(simulation.get("allow_short_windows"), bool, problems, default=False))
    registry = None
    if "registry" in top:
        try:
            registry = validate_login_server(str(_scalar(top["registry"], str, problems, default="")))
        except InvalidInput as exc:
            problems.append(f"line {_line(top['registry'])}: registry: {exc.detail}")
    sites_node = top.get("sites")
    if not isinstance(sites_node, yaml.SequenceNode):
        problems.append(f"line {_line(sites_node or root)}: 'sites' must be a list of sites")
        raise SitesFileError(problems)
    sites: list[Site] = []
    seen: dict[str, int] = {}
    for node in sites_node.value:
        site = _site(node, problems, allow_short=short and allow_short_windows)
        if site is None:
            continue
        if site.name in seen:
            problems.append(f"line {_line(node)}: duplicate site name {site.name!r} (first on line {seen[site.name]})")
            continue
        seen[site.name] = _line(node)
        sites.append(site)
    if problems:
        raise SitesFileError(problems)
    return SitesFile(registry=registry, sites=sites, allow_short_windows=short and allow_short_windows)


def import_sites(services: Dependencies, sites_file: SitesFile) -> ImportReport:
    """Upsert the file's sites, then backfill the sites that are new or whose scope changed."""
    existing = {site.name: site for site in services.store.list_sites()}
    added = [s.name for s in sites_file.sites if s.name not in existing]
    updated = [s.name for s in sites_file.sites if s.name in existing and existing[s.name] != s]
    unchanged = [s.name for s in sites_file.sites if existing.get(s.name) == s]
    services.store.upsert_sites(sites_file.sites)
    services.catalog.invalidate()
    grown = [s for s in sites_file.sites if s.name in added or _scope_grew(existing.get(s.name), s)]
    backfilled = {site.name: len(backfill_site(services, site.name)) for site in grown}
    logger.info("imported sites: %s added, %s updated, %s unchanged", len(added), len(updated), len(unchanged))
    return ImportReport(added=added, updated=updated, unchanged=unchanged, backfilled=backfilled)


def _scope_grew(before: Site | None, after: Site) -> bool:
    if before is None:
        return True
    return set(after.repositories) - set(before.repositories) != set() or before.tag_policy != after.tag_policy


def _site(node: yaml.Node, problems: list[str], *, allow_short: bool) -> Site | None:
    before = len(problems)
    fields = _mapping(node, _SITE_KEYS, "a site", problems)
    if "name" not in fields:
        problems.append(f"line {_line(node)}: a site needs a name")
        return None
    name = str(_scalar(fields["name"], str, problems, default=""))
    where = f"line {_line(node)}: site {name!r}"
    try:
        validate_site_name(name)
    except InvalidInput as exc:
        problems.append(f"line {_line(fields['name'])}: {exc.detail}")
    repositories, tags = _scope(fields, where, problems)
    schedule, window, ttl = _schedule(fields, node, where, problems, allow_short=allow_short)
    connected = _scalar(fields.get("connected_registry"), str, problems, default=None)
    if connected is not None and not _CONNECTED_REGISTRY.fullmatch(str(connected)):
        problems.append(
            f"line {_line(fields['connected_registry'])}: connected_registry must be a connected registry's ARM id"
        )
    endpoint = _scalar(fields.get("endpoint"), str, problems, default=None)
    if endpoint is not None and urlparse(str(endpoint)).scheme not in {"http", "https"}:
        problems.append(f"line {_line(fields['endpoint'])}: endpoint must be an http(s) URL")
    stale_after = _scalar(fields.get("stale_after_windows"), int, problems, default=DEFAULT_STALE_AFTER_WINDOWS)
    if not isinstance(stale_after, int) or stale_after < 1:
        problems.append(
            f"line {_line(fields.get('stale_after_windows') or node)}: stale_after_windows must be at least 1"
        )
    if len(problems) > before:
        return None
    return Site(
        name=name,
        ring=str(_scalar(fields.get("ring"), str, problems, default="default")),
        critical=bool(_scalar(fields.get("critical"), bool, problems, default=False)),
        owner=_scalar(fields.get("owner"), str, problems, default=None),
        repositories=tuple(repositories),
        tag_policy=tags,
        connected_registry=str(connected) if connected else None,
        schedule=schedule,
        sync_window=window,
        message_ttl=ttl,
        endpoint=str(endpoint).rstrip("/") if endpoint else None,
        stale_after_windows=int(stale_after),
    )


def _scope(fields: dict[str, yaml.Node], where: str, problems: list[str]) -> tuple[list[str], TagPolicy]:
    repositories = _strings(fields.get("repositories"), "repositories", problems)
    if not repositories:
        problems.append(f"{where}: 'repositories' must list at least one approved repository")
    for pattern in repositories:
        if not _PATTERN.fullmatch(pattern):
            problems.append(f"line {_line(fields['repositories'])}: {pattern!r} is not a repository name or glob")
    tags = TagPolicy()
    if "tags" in fields:
        tag_fields = _mapping(fields["tags"], _TAG_KEYS, "tags", problems)
        tags = TagPolicy(
            include=tuple(_strings(tag_fields.get("include"), "tags.include", problems)),
            exclude=tuple(_strings(tag_fields.get("exclude"), "tags.exclude", problems)),
            semver_only=bool(_scalar(tag_fields.get("semver_only"), bool, problems, default=False)),
        )
    return repositories, tags


def _schedule(
    fields: dict[str, yaml.Node], node: yaml.Node, where: str, problems: list[str], *, allow_short: bool
) -> tuple[str | None, timedelta | None, timedelta]:
    schedule = _scalar(fields.get("schedule"), str, problems, default=None)
    if schedule is not None:
        try:
            validate_schedule(str(schedule))
        except InvalidInput as exc:
            problems.append(f"line {_line(fields['schedule'])}: {exc.detail}")
    window = _duration(fields.get("sync_window"), "sync_window", problems)
    if schedule is not None and window is None and "sync_window" not in fields:
        problems.append(f"{where}: a schedule needs a sync_window (ISO 8601, e.g. PT3H)")
    ttl = _duration(fields.get("message_ttl"), "message_ttl", problems) or DEFAULT_MESSAGE_TTL
    try:
        check_limits(
            sync_window=window if schedule is not None else None, message_ttl=ttl, allow_short_windows=allow_short
        )
    except InvalidInput as exc:
        culprit = fields.get("sync_window") if exc.code == "WINDOW_OUT_OF_RANGE" else fields.get("message_ttl")
        problems.append(f"line {_line(culprit or node)}: {exc.detail}")
    return (str(schedule) if schedule else None), (window if schedule is not None else None), ttl


def _mapping(node: yaml.Node | None, allowed: set[str], what: str, problems: list[str]) -> dict[str, yaml.Node]:
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        problems.append(f"line {_line(node)}: {what} must be a mapping")
        return {}
    found: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key not in allowed:
            problems.append(
                f"line {_line(key_node)}: unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})"
            )
            continue
        found[key] = value_node
    return found


def _scalar(node: yaml.Node | None, kind: type, problems: list[str], *, default: Any) -> Any:
    if node is None:
        return default
    value = yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None
    if value is None and isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return default
    if kind is bool and not isinstance(value, bool):
        problems.append(f"line {_line(node)}: expected true or false, got {node.value!r}")
        return default
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        problems.append(f"line {_line(node)}: expected a whole number, got {getattr(node, 'value', '?')!r}")
        return default
    if kind is str and not isinstance(value, str | int | float):
        problems.append(f"line {_line(node)}: expected text")
        return default
    return str(value) if kind is str else value


def _strings(node: yaml.Node | None, what: str, problems: list[str]) -> list[str]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.append(f"line {_line(node)}: {what} must be a list")
        return []
    values = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not item.value:
            problems.append(f"line {_line(item)}: {what} items must be text")
            continue
        values.append(str(item.value))
    return values


def _duration(node: yaml.Node | None, what: str, problems: list[str]) -> timedelta | None:
    if node is None:
        return None
    text = _scalar(node, str, problems, default=None)
    if text is None:
        return None
    try:
        return parse_duration(str(text), setting=what)
    except InvalidInput as exc:
        problems.append(f"line {_line(node)}: {exc.detail}")
        return None


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1
