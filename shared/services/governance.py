"""Governance of the sites' connected registries: token expiry and scope drift.

**Token expiry.** For every site with a connected registry, its sync token (``parent.syncProperties.tokenId``)
and client tokens (``clientTokenIds``) are read and judged against the horizon
(``ACRSYNC_TOKEN_EXPIRY_HORIZON_DAYS``, default 30): ``expiring`` when a password still valid expires within
it, ``expired`` when every password with an expiry has expired.

Where the answers live (keeping ``GET /api/sites`` cheap): the sweeper calls :func:`check_tokens`, at most
once per :data:`TOKEN_CHECK_INTERVAL`, through the services' (cached) ARM reader. It keeps the per-site
result in the process's :class:`~shared.services.token_findings.TokenFindings` (no new table), publishes
``acrsync.site.token_expiring`` for each flagged token and sets the ``acrsync.tokens.expiring`` gauge.
``GET /api/sites`` shows those findings (``null`` until this process has swept once); ``GET /api/sites/{site}``
reads ARM live (best effort). A process that never sweeps (an HTTP-only instance) shows ``null`` in the list
until it does.

Event ids are ``<site>:token:<token name>:expiring:<expiry date>``: a token is announced once per expiry
date, whether it was first seen expiring or already expired; renewing it (a new expiry) is news again.

**Scope drift.** :func:`site_drift` compares a site's approved repositories with its sync token's scope
map (see :func:`shared.domain.governance.compute_drift`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.governance import (
    ScopeDrift,
    SiteTokens,
    TokenExpiry,
    TokenRole,
    assess_token,
    compute_drift,
    unreadable_token,
)
from shared.domain.model import Site
from shared.domain.observations import OutboundEvent, OutboundEventType
from shared.errors import AcrSyncError, NotFound, UpstreamRejected
from shared.observability import set_tokens_expiring
from shared.ports import ConnectedRegistryReader
from shared.services.announce import publish
from shared.services.dependencies import Dependencies

logger = logging.getLogger(__name__)

TOKEN_CHECK_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class TokenCheckReport:
    sites_checked: int
    sites_failed: int
    tokens_flagged: int
    events: int


def horizon_of(services: Dependencies) -> timedelta:
    return timedelta(days=services.settings.token_expiry_horizon_days)


# -- reading ---------------------------------------------------------------------------------------


def read_site_tokens(arm: ConnectedRegistryReader, site: Site, now: datetime, horizon: timedelta) -> SiteTokens | None:
    """The site's sync and client tokens, judged; ``None`` for a site without a connected registry.

    A token ARM does not have is ``missing``; one it cannot read right now is ``unknown``. A connected
    registry that syncs with its managed identity has no sync token: only its client tokens are judged.

    Raises:
        AcrSyncError: the connected registry itself could not be read.
    """
    if not site.connected_registry:
        return None
    state = arm.get_connected_registry(site.connected_registry)
    wanted = [(state.token_id, TokenRole.SYNC)] if state.token_id else []
    wanted += [(token_id, TokenRole.CLIENT) for token_id in state.client_token_ids]
    tokens = []
    for token_id, role in wanted:
        try:
            tokens.append(assess_token(arm.get_token(token_id), role, now, horizon))
        except NotFound:
            tokens.append(unreadable_token(token_id, role, missing=True))
        except AcrSyncError as exc:
            logger.info("token %s of site %s unreadable (%s)", token_id, site.name, type(exc).__name__)
            tokens.append(unreadable_token(token_id, role, missing=False))
    return SiteTokens(site.name, site.connected_registry, now, tuple(tokens))


# -- the sweeper's check ---------------------------------------------------------------------------


def check_tokens(services: Dependencies, *, force: bool = False) -> TokenCheckReport | None:
    """Judge every site's tokens, remember the answers, announce flagged tokens, set the gauge.

    Runs at most once per :data:`TOKEN_CHECK_INTERVAL` (``None`` when skipped) unless ``force``. ARM
    trouble with one site keeps that site's previous answer; an event sink that fails leaves the check
    due again at the next sweep. Raises only when the store is unavailable.
    """
    now = services.clock.now()
    findings = services.token_findings
    if not force and not findings.due(now, TOKEN_CHECK_INTERVAL):
        return None
    horizon = horizon_of(services)
    found: dict[str, SiteTokens] = {}
    failed: list[str] = []
    with_registry = [site for site in services.store.list_sites() if site.connected_registry]
    for site in with_registry:
        try:
            report = read_site_tokens(services.arm, site, now, horizon)
        except AcrSyncError as exc:
            logger.warning("tokens of site %s not checked: %s", site.name, type(exc).__name__)
            failed.append(site.name)
            continue
        if report is not None:
            found[site.name] = report
    current = findings.record(found, failed)
    flagged = sum(len(report.flagged) for report in current)
    set_tokens_expiring(flagged)
    events = [event for report in found.values() for event in token_events(report, horizon)]
    try:
        publish(services.events, events)
        published = True
    except AcrSyncError as exc:
        logger.warning("token expiry events not published (%s); the next sweep tries again", type(exc).__name__)
        published = False
    findings.mark_checked(now if published else None)
    if events:
        logger.warning("%s site tokens expired or expiring within %s days", len(events), horizon.days)
    return TokenCheckReport(len(found), len(failed), flagged, len(events) if published else 0)


def token_events(report: SiteTokens, horizon: timedelta) -> list[OutboundEvent]:
    """One ``acrsync.site.token_expiring`` per flagged token, with an id fixed by its expiry date."""
    events = []
    for token in report.flagged:
        expiry_day = token.expires_at.date().isoformat() if token.expires_at else "unknown"
        events.append(
            OutboundEvent(
                event_id=f"{report.site}:token:{token.name}:expiring:{expiry_day}",
                type=OutboundEventType.SITE_TOKEN_EXPIRING,
                source=f"/acrsync/sites/{report.site}",
                subject=f"sites/{report.site}/tokens/{token.name}",
                time=report.checked_at,
                data={
                    "site": report.site,
                    "connected_registry": report.connected_registry,
                    "horizon_days": horizon.days,
                    **token_view(token),
                },
            )
        )
    return events


# -- views -----------------------------------------------------------------------------------------


def token_view(token: TokenExpiry) -> dict[str, Any]:
    return {
        "token": token.name,
        "token_id": token.token_id,
        "role": token.role.value,
        "status": token.status,
        "state": token.state.value,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "days_left": token.days_left,
        "expiring": token.expiring,
    }


def tokens_view(report: SiteTokens | None, *, with_checked_at: bool = True) -> dict[str, Any] | None:
    """The ``tokens`` block of a site view: per token name, its role, status and expiry, and when it was
    checked (left out of live reads, which are checked now, so a site's ETag does not move every second)."""
    if report is None:
        return None
    extra = {"checked_at": report.checked_at.isoformat()} if with_checked_at else {}
    return {token.name: {**token_view(token), **extra} for token in report.tokens}


def cached_tokens_view(services: Dependencies, site: str) -> dict[str, Any] | None:
    """What the sweeper last found for ``site`` in this process (no ARM call); ``None`` when nothing."""
    return tokens_view(services.token_findings.get(site))


def live_tokens_view(services: Dependencies, site: Site) -> dict[str, Any] | None:
    """The site's tokens read now (best effort: ``None`` when ARM cannot say)."""
    try:
        report = read_site_tokens(services.arm, site, services.clock.now(), horizon_of(services))
        return tokens_view(report, with_checked_at=False)
    except AcrSyncError as exc:
        logger.info("tokens of site %s unknown (%s)", site.name, type(exc).__name__)
        return None


# -- scope drift -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteDrift:
    """A site's scope drift, or why it could not be computed (``drift`` is ``None`` then)."""

    site: str
    approved: tuple[str, ...]
    checked_at: datetime
    connected_registry: str | None = None
    token_id: str | None = None
    drift: ScopeDrift | None = None
    reason: str | None = None
    applicable: bool = True  # False: no scope map to compare (managed-identity sync)


def site_drift(services: Dependencies, site: Site) -> SiteDrift:
    """Compare the site's approved repositories with its sync token's scope map, read now.

    Raises:
        UpstreamUnavailable: ARM cannot be read right now (retry later).
    """
    now = services.clock.now()
    base = SiteDrift(site=site.name, approved=site.repositories, checked_at=now)
    if not site.connected_registry:
        return _unknown(base, "the site names no connected registry")
    try:
        state = services.arm.get_connected_registry(site.connected_registry)
        if state.syncs_with_identity:
            return replace(
                base,
                connected_registry=site.connected_registry,
                applicable=False,
                reason="the connected registry syncs with its managed identity: no sync token or scope map; "
                "RBAC/ABAC conditions decide what it syncs",
            )
        if not state.token_id:
            return _unknown(base, "the connected registry has no sync token", site.connected_registry)
        scope = services.arm.get_sync_scope(state.token_id)
    except (NotFound, UpstreamRejected) as exc:
        return _unknown(base, str(exc), site.connected_registry)
    return SiteDrift(
        site=site.name,
        approved=site.repositories,
        checked_at=now,
        connected_registry=site.connected_registry,
        token_id=state.token_id,
        drift=compute_drift(site.repositories, scope.repository_patterns),
    )


def _unknown(base: SiteDrift, reason: str, connected_registry: str | None = None) -> SiteDrift:
    return SiteDrift(base.site, base.approved, base.checked_at, connected_registry=connected_registry, reason=reason)


def drift_view(result: SiteDrift) -> dict[str, Any]:
    drift = result.drift
    if not result.applicable:
        status = "not-applicable"
    elif drift is None:
        status = "unknown"
    else:
        status = "drift" if drift.drifted else "ok"
    return {
        "site": result.site,
        "connected_registry": result.connected_registry,
        "token_id": result.token_id,
        "status": status,
        "reason": result.reason,
        "approved": list(result.approved),
        "granted": list(drift.granted) if drift is not None else None,
        "over_exposed": [{"pattern": g.pattern, "overlaps": list(g.overlaps)} for g in drift.over_exposed]
        if drift is not None
        else [],
        "over_exposed_count": len(drift.over_exposed) if drift is not None else 0,
        "missing": [{"pattern": g.pattern, "overlaps": list(g.overlaps)} for g in drift.missing]
        if drift is not None
        else [],
        "missing_count": len(drift.missing) if drift is not None else 0,
    }
