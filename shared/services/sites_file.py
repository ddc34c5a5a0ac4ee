"""``sites.yaml``: the sites acrsync knows, their rings, scopes and sync schedules.

Loading is all-or-nothing: every problem is reported with its line and reason, and a file with
any problem imports nothing. Only a file that says ``simulation: {allow_short_windows: true}``
may use windows and TTLs below the connected-registry limits, and only when the caller (the
local dev mode, simulated or on loopback registries) allows it.

The file is read as plain YAML and nothing else: a key given twice, a tag outside the core schema
(``!!python/...``, ``!!binary``, ``!custom``) and a text value that YAML would read as something
else (``yes``, ``0x1f``, ``1e3``, ``~``, ``2026-01-01``: quote it) are refused, because each makes
the file mean something other than what its reader sees. Endpoints are ``https://`` (plain
``http://`` only on loopback) and never carry credentials; no message repeats them.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import yaml

from shared.domain.model import DEFAULT_MESSAGE_TTL, DEFAULT_STALE_AFTER_WINDOWS, Site, TagPolicy
from shared.domain.names import validate_login_server, validate_site_name
from shared.domain.transfers import parse_bandwidth
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
    "cluster_id",
    "log_analytics_workspace_id",
    "reporter",
    "link",
}
_LINK_KEYS = {"bandwidth"}
_TAG_KEYS = {"include", "exclude", "semver_only"}
_SIMULATION_KEYS = {"allow_short_windows"}
_PATTERN = re.compile(r"[a-z0-9._/*?\[\]-]+")
_CONNECTED_REGISTRY = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/[^/]+"
    r"/connectedRegistries/[^/]+",
    re.IGNORECASE,
)
_CONNECTED_CLUSTER = re.compile(
    r"/subscriptions/[0-9a-f-]{36}/resourceGroups/[-\w.()]{1,90}/providers/Microsoft\.Kubernetes"
    r"/connectedClusters/[A-Za-z0-9][-_A-Za-z0-9]{0,62}",
    re.IGNORECASE,
)
_WORKSPACE_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_YAML_TAG = "tag:yaml.org,2002:"
_STR_TAG = _YAML_TAG + "str"
# Explicit tags a sites file may use: the core schema. Anything else (!!python/..., !!binary, !!set,
# !!timestamp, local !tags) would be constructed into something that is not plain data, or not at all.
_CORE_TAGS = frozenset(_YAML_TAG + name for name in ("str", "int", "float", "bool", "null", "seq", "map"))
# A node whose tag was refused while composing: already reported, so readers skip it silently.
_REFUSED_TAG = "!acrsync-refused"
# Plain scalars that PyYAML (YAML 1.1) reads as text but other YAML readers (YAML 1.2 core schema, or
# YAML 1.1 booleans PyYAML leaves out) read as numbers, booleans or null: quoting makes every reader agree.
_NOT_TEXT_ELSEWHERE = re.compile(
    r"y|Y|n|N"
    r"|[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|0o[0-7]+|0x[0-9a-fA-F]+|0b[01_]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_CREDENTIALS_IN_ENDPOINT = (
    "endpoint must not carry credentials (user:password@); give the site's client token in "
    "ACRSYNC_SITE_CREDENTIALS instead"
)
# Characters that move the cursor, reorder text or hide in it (C0/C1 controls, bidi overrides,
# zero-width characters, line separators, lone surrogates): no name, scope or owner needs them.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class _Reading(StrEnum):
    """What YAML reads a plain scalar as, for the "quote it" message."""

    BOOLEAN = "true/false"
    NUMBER = "a number"
    NULL = "null (no value)"
    DATE = "a date"
    OTHER = "a special value"


_READING_BY_TAG = {
    _YAML_TAG + "bool": _Reading.BOOLEAN,
    _YAML_TAG + "int": _Reading.NUMBER,
    _YAML_TAG + "float": _Reading.NUMBER,
    _YAML_TAG + "null": _Reading.NULL,
    _YAML_TAG + "timestamp": _Reading.DATE,
}


class _Loader(yaml.SafeLoader):
    """The safe loader's composer, refusing (and recording, with its line) every explicit tag
    outside the core schema instead of leaving it for a constructor to choke on."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.refused: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        tag = getattr(event, "tag", None)  # an alias has none: its node was checked where it was anchored
        node = super().compose_node(parent, index)
        assert node is not None  # only an empty document composes to None, and that is no node here
        if tag not in (None, "!") and tag not in _CORE_TAGS:
            shown = str(tag).replace(_YAML_TAG, "!!", 1)[:80]
            self.refused.append(
                f"line {_line(node)}: the tag {shown!r} is not allowed in a sites file "
                "(plain YAML only: text, numbers, true/false, lists and mappings)"
            )
            node.tag = _REFUSED_TAG
        return node


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
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise SitesFileError([f"{line}not valid YAML ({getattr(exc, 'problem', None) or 'syntax error'})"]) from exc
    finally:
        loader.dispose()
    problems: list[str] = list(loader.refused)
    if not isinstance(root, yaml.MappingNode):
        raise SitesFileError([*problems, "line 1: the file must be a mapping with a 'sites' list"])
    top = _mapping(root, _TOP_KEYS, "the file", problems)
    short = False
    if "simulation" in top:
        simulation = _mapping(top["simulation"], _SIMULATION_KEYS, "simulation", problems)
        short = bool(_scalar(simulation.get("allow_short_windows"), bool, problems, default=False))
    registry = None
    registry_text = _text(top.get("registry"), "registry", problems)
    if registry_text is not None:
        try:
            registry = validate_login_server(registry_text)
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
        sites.append(replace(site, position=len(sites)))
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
        if node.tag != _REFUSED_TAG:
            problems.append(f"line {_line(node)}: a site needs a name")
        return None
    name = _text(fields["name"], "name", problems)
    where = f"line {_line(node)}: " + (f"site {name!r}" if name is not None else "this site")
    if name is not None:
        try:
            validate_site_name(name)
        except InvalidInput as exc:
            problems.append(f"line {_line(fields['name'])}: {exc.detail}")
    ring = _text(fields.get("ring"), "ring", problems)
    owner = _text(fields.get("owner"), "owner", problems)
    repositories, tags = _scope(fields, where, problems)
    schedule, window, ttl = _schedule(fields, node, where, problems, allow_short=allow_short)
    connected = _text(fields.get("connected_registry"), "connected_registry", problems)
    if connected is not None and not _CONNECTED_REGISTRY.fullmatch(connected):
        problems.append(
            f"line {_line(fields['connected_registry'])}: connected_registry must be a connected registry's ARM id"
        )
    endpoint = _text(fields.get("endpoint"), "endpoint", problems, secret=True)
    if endpoint is not None:
        problem = _endpoint_problem(endpoint)
        if problem is not None:
            problems.append(f"line {_line(fields['endpoint'])}: {problem}")
    stale_after = _scalar(fields.get("stale_after_windows"), int, problems, default=DEFAULT_STALE_AFTER_WINDOWS)
    if not isinstance(stale_after, int) or stale_after < 1:
        problems.append(
            f"line {_line(fields.get('stale_after_windows') or node)}: stale_after_windows must be at least 1"
        )
    cluster = _text(fields.get("cluster_id"), "cluster_id", problems)
    if cluster is not None and not _CONNECTED_CLUSTER.fullmatch(cluster):
        problems.append(
            f"line {_line(fields['cluster_id'])}: cluster_id must be an Arc connected cluster's ARM id "
            "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Kubernetes/connectedClusters/<name>)"
        )
    workspace = _text(fields.get("log_analytics_workspace_id"), "log_analytics_workspace_id", problems)
    if workspace is not None and not _WORKSPACE_ID.fullmatch(workspace):
        problems.append(
            f"line {_line(fields['log_analytics_workspace_id'])}: log_analytics_workspace_id must be the "
            "workspace's id (a GUID, from its Properties blade), not its ARM id"
        )
    reporter = _scalar(fields.get("reporter"), bool, problems, default=False)
    bandwidth = _bandwidth(fields.get("link"), problems)
    if len(problems) > before or name is None:
        return None
    return Site(
        name=name,
        ring=ring if ring is not None else "default",
        critical=bool(_scalar(fields.get("critical"), bool, problems, default=False)),
        owner=owner,
        repositories=tuple(repositories),
        tag_policy=tags,
        connected_registry=connected or None,
        schedule=schedule,
        sync_window=window,
        message_ttl=ttl,
        endpoint=endpoint.rstrip("/") if endpoint else None,
        stale_after_windows=int(stale_after),
        cluster_id=cluster or None,
        log_analytics_workspace_id=workspace.lower() if workspace else None,
        reporter=bool(reporter),
        bandwidth_bps=bandwidth,
    )


def _bandwidth(node: yaml.Node | None, problems: list[str]) -> float | None:
    """``link: {bandwidth: "2Mbit/s"}``: the site's declared link rate in bits per second."""
    if node is None:
        return None
    link = _mapping(node, _LINK_KEYS, "link", problems)
    text = _text(link.get("bandwidth"), "link.bandwidth", problems)
    if text is None:
        return None
    try:
        return parse_bandwidth(text)
    except InvalidInput as exc:
        problems.append(f"line {_line(link['bandwidth'])}: link.bandwidth: {exc.detail}")
        return None


def _endpoint_problem(endpoint: str) -> str | None:  # noqa: PLR0911 - one answer per rule, in order
    """Why ``endpoint`` is not a registry address acrsync may call, or ``None``; never repeats the URL
    (it may hold a password)."""
    if any(ch.isspace() or unicodedata.category(ch) in _CONTROL_CATEGORIES for ch in endpoint):
        return "endpoint must not contain spaces or control characters"
    try:
        parts = urlsplit(endpoint)
    except ValueError:
        return _CREDENTIALS_IN_ENDPOINT if "@" in endpoint else "endpoint is not a valid URL"
    if "@" in parts.netloc:
        return _CREDENTIALS_IN_ENDPOINT
    if parts.scheme not in {"http", "https"}:
        return "endpoint must be an http(s) URL"
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        return "endpoint has a port that is not a number from 0 to 65535"
    if not host:
        return "endpoint must name a host: https://host[:port]"
    if parts.query or parts.fragment or endpoint.endswith(("?", "#")):
        return "endpoint must not have a query or a fragment: https://host[:port][/path]"
    # Plain http sends the site's client token in clear text; on loopback it never leaves the machine
    # (the rule for --arm-endpoint too), so it needs no dev flag: `acrsync sites import` of a local
    # store with loopback registries works, and `acrsync dev --registries real` sets its own endpoints.
    if parts.scheme == "http" and not _is_loopback(host):
        return "endpoint must use https:// (plain http:// only on loopback: 127.0.0.0/8, ::1, localhost)"
    return None


def _is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``, spelled literally (no name lookups, no mapped forms)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in ipaddress.IPv4Network("127.0.0.0/8")
    return address == ipaddress.IPv6Address("::1")


def _scope(fields: dict[str, yaml.Node], where: str, problems: list[str]) -> tuple[list[str], TagPolicy]:
    repositories = _strings(fields.get("repositories"), "repositories", problems)
    if not repositories and getattr(fields.get("repositories"), "tag", None) != _REFUSED_TAG:
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
    schedule = _text(fields.get("schedule"), "schedule", problems)
    if schedule is not None:
        try:
            validate_schedule(schedule)
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
        if node.tag != _REFUSED_TAG:
            problems.append(f"line {_line(node)}: {what} must be a mapping")
        return {}
    found: dict[str, yaml.Node] = {}
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(f"line {_line(key_node)}: keys in {what} must be plain names")
            continue
        if key_node.tag == _REFUSED_TAG:
            continue
        key = str(key_node.value)
        # PyYAML keeps the last of two equal keys without a word: the file would not mean what it shows.
        if key in seen:
            problems.append(f"line {_line(key_node)}: duplicate key {key!r} in {what} (first on line {seen[key]})")
            continue
        seen[key] = _line(key_node)
        if key not in allowed:
            problems.append(
                f"line {_line(key_node)}: unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})"
            )
            continue
        found[key] = value_node
    return found


def _text(node: yaml.Node | None, what: str, problems: list[str], *, secret: bool = False) -> str | None:
    """The text of a scalar that every YAML reader reads as text, or ``None`` (absent, or refused with
    a problem). ``secret``: the value may hold credentials, so no message repeats it."""
    if node is None or node.tag == _REFUSED_TAG:
        return None
    if not isinstance(node, yaml.ScalarNode):
        problems.append(f"line {_line(node)}: {what} must be text")
        return None
    value = str(node.value)
    reading = _READING_BY_TAG.get(node.tag, _Reading.OTHER) if node.tag != _STR_TAG else None
    if reading is None and node.style is None and _NOT_TEXT_ELSEWHERE.fullmatch(value):
        reading = _Reading.NUMBER if value not in {"y", "Y", "n", "N"} else _Reading.BOOLEAN
    if reading is not None:
        shown = "an empty value" if value == "" else ("it" if secret else repr(value[:40]))
        problems.append(
            f"line {_line(node)}: {what}: YAML reads {shown} as {reading}, not as text: quote it"
            + ("" if secret or value == "" else f" ({_quoted(value[:40])})")
            + (", or leave the key out" if reading is _Reading.NULL else "")
        )
        return None
    control = next((ch for ch in value if unicodedata.category(ch) in _CONTROL_CATEGORIES), None)
    if control is not None:
        problems.append(f"line {_line(node)}: {what} contains a control character (U+{ord(control):04X}): remove it")
        return None
    return value


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scalar(node: yaml.Node | None, kind: type, problems: list[str], *, default: Any) -> Any:
    """A true/false or whole-number scalar; ``default`` when absent or null."""
    if node is None or node.tag == _REFUSED_TAG:
        return default
    if isinstance(node, yaml.ScalarNode) and node.tag == _YAML_TAG + "null":
        return default
    value = _construct(node) if isinstance(node, yaml.ScalarNode) else None
    if kind is bool and not isinstance(value, bool):
        problems.append(f"line {_line(node)}: expected true or false, got {getattr(node, 'value', '?')!r}")
        return default
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        problems.append(f"line {_line(node)}: expected a whole number, got {getattr(node, 'value', '?')!r}")
        return default
    return value


def _construct(node: yaml.ScalarNode) -> Any:
    """The value of a core-schema scalar (its tag was checked while composing), ``None`` when it does not
    construct (``!!int abc``)."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except (yaml.YAMLError, ValueError, KeyError, TypeError):
        return None


def _strings(node: yaml.Node | None, what: str, problems: list[str]) -> list[str]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        if node.tag != _REFUSED_TAG:
            problems.append(f"line {_line(node)}: {what} must be a list")
        return []
    values = []
    for item in node.value:
        if isinstance(item, yaml.ScalarNode) and item.tag == _STR_TAG and not item.value:
            problems.append(f"line {_line(item)}: {what} items must be text")
            continue
        text = _text(item, f"{what} items", problems)
        if text is not None:
            values.append(text)
    return values


def _duration(node: yaml.Node | None, what: str, problems: list[str]) -> timedelta | None:
    text = _text(node, what, problems)
    if text is None:
        return None
    try:
        return parse_duration(text, setting=what)
    except InvalidInput as exc:
        problems.append(f"line {_line(node)}: {exc.detail}")
        return None


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1
