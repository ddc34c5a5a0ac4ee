"""Preflight: is a parent registry and its connected registries set up the way acrsync needs?

One :class:`Check` per line: ``check``, ``target``, ``result`` (``ok``, ``warn``, ``fail``) and ``detail``.

* ``registry``: the parent registry exists (a missing one ends the preflight: nothing else can be checked);
  ``registry-sku``: it is Premium; ``data-endpoint``: its dedicated data endpoint is on.
* Per site: ``connected-registry`` (the site names one, under this registry, and ARM has it), ``activation``
  (Active: deployed on-premises), ``mode`` (a ReadWrite child cannot sync from a ReadOnly parent),
  ``sync-settings`` (schedule a 5-field cron; window 1 h – 7 d unless continuous; TTL 1 – 90 d; a warning
  when the site's configured values differ from ARM's, which the sweeper copies), ``notifications``
  (``notificationsList`` parses and raises push events for every approved repository: fail when one gets
  none, warn when only some of its pushes do), ``sync-token`` (enabled, not expired; a warning when it
  expires within the horizon) and ``scope`` (the sync token's scope map grants every approved repository:
  fail when one is missing; a warning for grants nobody approved).
* Per site, what runs there and its health: ``arc-cluster`` (the Arc connected cluster is Connected),
  ``registry-extension`` (the connected registry extension is installed and Succeeded, its errors),
  ``tls`` (the site registry's certificate, as its reporter last read it: a warning within the
  horizon, a failure once expired) and ``visibility`` (a warning for a site that names no workspace,
  cluster or reporter: acrsync cannot tell what runs there).

ARM trouble (unreachable, throttled, unauthorized) propagates as :class:`UpstreamUnavailable`: the
preflight is incomplete, and the CLI says so with its own exit code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.domain.governance import (
    Coverage,
    ExpiryState,
    TokenRole,
    assess_token,
    compute_drift,
    notification_coverage,
)
from shared.domain.inventory import TokenState, registry_of, token_name
from shared.domain.model import MAX_MESSAGE_TTL, MAX_SYNC_WINDOW, MIN_MESSAGE_TTL, MIN_SYNC_WINDOW, Site
from shared.domain.observations import ConnectedRegistryState
from shared.domain.windows import CONTINUOUS_SCHEDULE, format_duration, validate_schedule
from shared.domain.workloads import ClusterConnectivity, ExtensionState, SiteObservation, SiteRuntime
from shared.errors import InvalidInput, NotFound, UpstreamRejected, UpstreamUnavailable
from shared.ports import ArmInventory, ClusterHealthReader

READ_ONLY, READ_WRITE = "ReadOnly", "ReadWrite"
# ConnectedRegistryMode also has the legacy aliases Registry (ReadWrite) and Mirror (ReadOnly).
_MODES = {"readonly": READ_ONLY, "mirror": READ_ONLY, "readwrite": READ_WRITE, "registry": READ_WRITE}


class Result(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    check: str
    target: str
    result: Result
    detail: str

    def view(self) -> dict[str, Any]:
        return {"check": self.check, "target": self.target, "result": self.result.value, "detail": self.detail}


def preflight(
    arm: ArmInventory,
    registry_id: str,
    sites: Sequence[Site],
    *,
    now: datetime,
    horizon: timedelta,
    health: ClusterHealthReader | None = None,
    runtimes: Mapping[str, SiteRuntime] | None = None,
) -> list[Check]:
    """Every check for the registry and the sites, in order. ``health`` reads each site's Arc cluster;
    ``runtimes`` is what acrsync last learnt at each site (for the TLS certificate).

    Raises:
        UpstreamUnavailable: ARM could not be read (nothing partial is returned).
        UpstreamRejected: ARM refused to read the registry itself.
    """
    name = registry_id.rstrip("/").rsplit("/", 1)[-1]
    try:
        registry = arm.get_registry(registry_id)
    except NotFound:
        return [Check("registry", name, Result.FAIL, f"no registry {registry_id} (or no read access to it)")]
    where = ", ".join(part for part in (registry.login_server, registry.location) if part)
    checks = [Check("registry", registry.name, Result.OK, f"exists ({where})" if where else "exists")]
    if registry.is_premium:
        checks.append(Check("registry-sku", registry.name, Result.OK, "Premium"))
    else:
        checks.append(
            Check(
                "registry-sku",
                registry.name,
                Result.FAIL,
                f"{registry.sku or 'unknown'}: connected registries need Premium",
            )
        )
    if registry.data_endpoint_enabled:
        checks.append(Check("data-endpoint", registry.name, Result.OK, "dedicated data endpoint enabled"))
    else:
        checks.append(
            Check(
                "data-endpoint",
                registry.name,
                Result.FAIL,
                "dedicated data endpoint disabled: connected registries sync through it "
                "(az acr update --data-endpoint-enabled)",
            )
        )
    connected = {cr.resource_id.lower(): cr for cr in arm.list_connected_registries(registry_id)}
    if not sites:
        checks.append(Check("sites", registry.name, Result.WARN, "no sites configured: nothing else to check"))
    for site in sites:
        checks.extend(_site_checks(arm, registry_id, site, connected, now=now, horizon=horizon))
        checks.extend(site_health_checks(site, health, (runtimes or {}).get(site.name), now=now, horizon=horizon))
    return checks


def site_health_checks(
    site: Site, health: ClusterHealthReader | None, runtime: SiteRuntime | None, *, now: datetime, horizon: timedelta
) -> list[Check]:
    """``arc-cluster``, ``registry-extension``, ``tls`` and ``visibility`` for one site."""
    target = site.name
    checks: list[Check] = []
    if site.cluster_id and health is not None:
        try:
            observed = health.read_health(site, now=now)
        except NotFound:
            checks.append(Check("arc-cluster", target, Result.FAIL, f"no Arc connected cluster {site.cluster_id}"))
        except (UpstreamUnavailable, UpstreamRejected) as exc:
            checks.append(Check("arc-cluster", target, Result.WARN, f"not read: {exc}"))
        else:
            checks.extend(_cluster_checks(target, observed))
    tls = runtime.health.tls_expires_at if runtime is not None else None
    if tls is not None:
        left = tls - now
        if left <= timedelta(0):
            checks.append(Check("tls", target, Result.FAIL, f"the registry's certificate expired on {_day(tls)}"))
        elif left <= horizon:
            checks.append(Check("tls", target, Result.WARN, f"the registry's certificate expires on {_day(tls)}"))
        else:
            checks.append(Check("tls", target, Result.OK, f"valid until {_day(tls)}"))
    elif site.reporter:
        checks.append(Check("tls", target, Result.WARN, "no report yet: the certificate's expiry is unknown"))
    if not (site.cluster_id or site.log_analytics_workspace_id or site.reporter):
        checks.append(
            Check(
                "visibility",
                target,
                Result.WARN,
                "names no cluster_id, log_analytics_workspace_id or reporter: acrsync cannot see what runs there",
            )
        )
    return checks


def _cluster_checks(target: str, observed: SiteObservation) -> list[Check]:
    connectivity = observed.cluster_connectivity or ClusterConnectivity.UNKNOWN
    if connectivity is ClusterConnectivity.CONNECTED:
        cluster = Check("arc-cluster", target, Result.OK, "Connected")
    elif connectivity in {ClusterConnectivity.CONNECTING, ClusterConnectivity.UNKNOWN}:
        cluster = Check("arc-cluster", target, Result.WARN, connectivity.value)
    else:
        cluster = Check("arc-cluster", target, Result.FAIL, f"{connectivity.value}: the cluster does not reach Azure")
    extension = observed.extension
    if extension is None or extension.state is ExtensionState.NOT_INSTALLED:
        detail = "no Microsoft.ContainerRegistry.ConnectedRegistry extension on the cluster"
        return [cluster, Check("registry-extension", target, Result.FAIL, detail)]
    version = f" {extension.version}" if extension.version else ""
    errors = f": {'; '.join(extension.errors)}" if extension.errors else ""
    if extension.state is ExtensionState.SUCCEEDED and not extension.errors:
        result = Result.OK
    elif extension.state is ExtensionState.FAILED:
        result = Result.FAIL
    else:
        result = Result.WARN
    return [cluster, Check("registry-extension", target, result, f"{extension.state.value}{version}{errors}")]


def scope_read_problem(token_id: str, exc: Exception) -> str:
    """A short reason for a sync scope that could not be read (the adapter names the failed operation)."""
    name = token_name(token_id)
    if isinstance(exc, NotFound):
        if "scope_maps.get" in str(exc):
            return f"the scope map of sync token {name} is not in ARM"
        return f"sync token {name} is not in ARM"
    return f"sync token {name} cannot be read: {exc}"


def exit_result(checks: Sequence[Check]) -> Result:
    """The worst result."""
    results = {check.result for check in checks}
    return Result.FAIL if Result.FAIL in results else Result.WARN if Result.WARN in results else Result.OK


# -- per site --------------------------------------------------------------------------------------


def _site_checks(
    arm: ArmInventory,
    registry_id: str,
    site: Site,
    connected: dict[str, ConnectedRegistryState],
    *,
    now: datetime,
    horizon: timedelta,
) -> list[Check]:
    target = site.name
    if not site.connected_registry:
        return [Check("connected-registry", target, Result.FAIL, "the site names no connected_registry")]
    if registry_of(site.connected_registry) != registry_id.rstrip("/").lower():
        return [
            Check(
                "connected-registry",
                target,
                Result.FAIL,
                f"{site.connected_registry} belongs to another registry than {registry_id}",
            )
        ]
    cr = connected.get(site.connected_registry.lower())
    if cr is None:
        cr_name = site.connected_registry.rstrip("/").rsplit("/", 1)[-1]
        return [Check("connected-registry", target, Result.FAIL, f"the registry has no connected registry {cr_name}")]
    checks = [
        Check("connected-registry", target, Result.OK, f"{cr.name} ({cr.connection_state.value})"),
        Check(
            "activation",
            target,
            Result.OK if cr.active else Result.FAIL,
            "Active" if cr.active else "Inactive: not deployed on-premises yet (or deactivated)",
        ),
        _mode_check(target, cr, connected),
        _settings_check(target, site, cr),
        _notifications_check(target, site, cr),
    ]
    checks.extend(_token_and_scope_checks(arm, target, site, cr, now=now, horizon=horizon))
    return checks


def _mode(value: str | None) -> str | None:
    return _MODES.get((value or "").lower())


def _mode_check(target: str, cr: ConnectedRegistryState, connected: dict[str, ConnectedRegistryState]) -> Check:
    mode = _mode(cr.mode)
    if mode is None:
        return Check("mode", target, Result.WARN, f"unknown mode {cr.mode!r}")
    if cr.parent_id is None:
        return Check("mode", target, Result.OK, f"{mode} under the cloud registry")
    parent = connected.get(cr.parent_id.lower())
    if parent is None:
        return Check("mode", target, Result.WARN, f"{mode}; its parent {cr.parent_id} is not under this registry")
    parent_mode = _mode(parent.mode)
    if parent_mode == READ_ONLY and mode == READ_WRITE:
        return Check(
            "mode",
            target,
            Result.FAIL,
            f"ReadWrite under the ReadOnly {parent.name}: a ReadOnly parent only serves ReadOnly",
        )
    return Check("mode", target, Result.OK, f"{mode} under {parent_mode or parent.mode} {parent.name}")


def _settings_check(target: str, site: Site, cr: ConnectedRegistryState) -> Check:
    problems: list[str] = []
    schedule = (cr.schedule or "").strip() or None
    continuous = schedule is None or schedule == CONTINUOUS_SCHEDULE
    if schedule is not None:
        try:
            validate_schedule(schedule)
        except InvalidInput as exc:
            problems.append(exc.detail)
    if not continuous:
        if cr.sync_window is None:
            problems.append("a schedule without a syncWindow")
        elif not MIN_SYNC_WINDOW <= cr.sync_window <= MAX_SYNC_WINDOW:
            problems.append(f"syncWindow {format_duration(cr.sync_window)} is outside PT1H to P7D")
    if cr.message_ttl is None:
        problems.append("no messageTtl")
    elif not MIN_MESSAGE_TTL <= cr.message_ttl <= MAX_MESSAGE_TTL:
        problems.append(f"messageTtl {format_duration(cr.message_ttl)} is outside P1D to P90D")
    described = _describe_settings(schedule, None if continuous else cr.sync_window, cr.message_ttl)
    if problems:
        return Check("sync-settings", target, Result.FAIL, "; ".join(problems))
    differences = _differences(site, schedule, continuous, cr)
    if differences:
        return Check(
            "sync-settings",
            target,
            Result.WARN,
            f"{described}; the site says {', '.join(differences)} (the sweeper follows ARM)",
        )
    return Check("sync-settings", target, Result.OK, described)


def _describe_settings(schedule: str | None, window: timedelta | None, ttl: timedelta | None) -> str:
    parts = [f"schedule {schedule}" if schedule and schedule != CONTINUOUS_SCHEDULE else "continuous"]
    if window is not None:
        parts.append(f"window {format_duration(window)}")
    if ttl is not None:
        parts.append(f"TTL {format_duration(ttl)}")
    return ", ".join(parts)


def _differences(site: Site, schedule: str | None, continuous: bool, cr: ConnectedRegistryState) -> list[str]:
    site_continuous = site.schedule is None or site.schedule.strip() == CONTINUOUS_SCHEDULE
    found = []
    if site_continuous != continuous or (not continuous and site.schedule != schedule):
        found.append(f"schedule {site.schedule or 'continuous'}")
    if not continuous and site.sync_window is not None and site.sync_window != cr.sync_window:
        found.append(f"window {format_duration(site.sync_window)}")
    if cr.message_ttl is not None and site.message_ttl != cr.message_ttl:
        found.append(f"TTL {format_duration(site.message_ttl)}")
    return found


def _notifications_check(target: str, site: Site, cr: ConnectedRegistryState) -> Check:
    if not cr.notifications:
        return Check(
            "notifications",
            target,
            Result.FAIL,
            "notificationsList is empty: the site raises no events, so nothing is ever seen at the edge",
        )
    coverage = notification_coverage(cr.notifications, site.repositories)
    uncovered = coverage.patterns(Coverage.NONE)
    partial = coverage.patterns(Coverage.PARTIAL)
    problems = [*coverage.invalid]
    if uncovered:
        problems.append(f"no push events for {', '.join(uncovered)}")
    if problems:
        if partial:
            problems.append(f"events for only some pushes of {', '.join(partial)}")
        return Check("notifications", target, Result.FAIL, "; ".join(problems))
    if partial:
        return Check(
            "notifications",
            target,
            Result.WARN,
            f"events for only some pushes (one tag or digest, or some repositories) of {', '.join(partial)}",
        )
    return Check("notifications", target, Result.OK, f"pushes of {', '.join(site.repositories)} raise events")


def _token_and_scope_checks(
    arm: ArmInventory, target: str, site: Site, cr: ConnectedRegistryState, *, now: datetime, horizon: timedelta
) -> list[Check]:
    if cr.syncs_with_identity:
        applies = "not applicable: the connected registry syncs with its managed identity (no sync token)"
        return [
            Check("sync-token", target, Result.OK, applies),
            Check(
                "scope", target, Result.OK, "not applicable: RBAC/ABAC conditions, not a scope map, decide what syncs"
            ),
        ]
    if not cr.token_id:
        return [
            Check("sync-token", target, Result.FAIL, "the connected registry has no sync token"),
            Check("scope", target, Result.FAIL, "no sync token: nothing syncs"),
        ]
    try:
        scope = arm.get_sync_scope(cr.token_id)
    except (NotFound, UpstreamRejected) as exc:
        problem = scope_read_problem(cr.token_id, exc)
        return [Check("sync-token", target, Result.FAIL, problem), Check("scope", target, Result.FAIL, problem)]
    name = token_name(cr.token_id)
    expiry = assess_token(TokenState.from_sync_scope(scope), TokenRole.SYNC, now, horizon)
    if not scope.token_enabled:
        token_check = Check("sync-token", target, Result.FAIL, f"{name} is disabled: the site cannot sync")
    elif expiry.state is ExpiryState.EXPIRED:
        token_check = Check(
            "sync-token", target, Result.FAIL, f"{name} expired {_day(expiry.expires_at)}: the site cannot sync"
        )
    elif expiry.state is ExpiryState.EXPIRING:
        token_check = Check(
            "sync-token",
            target,
            Result.WARN,
            f"{name} expires {_day(expiry.expires_at)} ({expiry.days_left} days, within {horizon.days})",
        )
    else:
        until = f", valid until {_day(expiry.expires_at)}" if expiry.expires_at else ""
        token_check = Check("sync-token", target, Result.OK, f"{name} enabled{until}")
    drift = compute_drift(site.repositories, scope.repository_patterns)
    granted = ", ".join(scope.repository_patterns) or "nothing"
    if drift.missing:
        missing = ", ".join(gap.pattern for gap in drift.missing)
        detail = f"approved but never synced (not in the scope map): {missing}"
        if drift.over_exposed:
            detail += f"; granted but not approved: {', '.join(gap.pattern for gap in drift.over_exposed)}"
        scope_check = Check("scope", target, Result.FAIL, detail)
    elif drift.over_exposed:
        over = ", ".join(gap.pattern for gap in drift.over_exposed)
        count = len(drift.over_exposed)
        scope_check = Check(
            "scope",
            target,
            Result.WARN,
            f"over-broad: the scope map grants {count} pattern{'s' if count != 1 else ''} not approved: {over}",
        )
    else:
        scope_check = Check("scope", target, Result.OK, f"grants {granted}")
    return [token_check, scope_check]


def _day(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "never"
