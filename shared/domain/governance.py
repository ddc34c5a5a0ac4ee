"""Governance rules, as pure functions: repository-pattern containment, scope drift between a site's
approved repositories and its sync token's scope map, the ``notificationsList`` grammar, and token
expiry.

Repository patterns are the ones acrsync meets: exact names, ``prefix/*`` (ACR's only wildcard form in
scope maps, covering nested repositories too), ``*`` (every repository) and, in sites files, shell globs.
Containment is decided exactly for names and literal-prefix wildcards (``a/*``, ``a*``, ``*``); for other
globs it is answered conservatively (a glob is never assumed to contain a wildcard it cannot be shown to).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.inventory import TokenState, token_name
from shared.errors import InvalidInput

_META = frozenset("*?[")


# -- repository patterns ---------------------------------------------------------------------------


def _has_meta(pattern: str) -> bool:
    return any(ch in _META for ch in pattern)


def _literal_prefix(pattern: str) -> str | None:
    """``a/*`` → ``a/``, ``a*`` → ``a``, ``*`` → ``""``; ``None`` for names and other globs."""
    if pattern.endswith("*") and not _has_meta(pattern[:-1]):
        return pattern[:-1]
    return None


def _lead(pattern: str) -> str:
    """The literal text before the first glob character."""
    for index, ch in enumerate(pattern):
        if ch in _META:
            return pattern[:index]
    return pattern


def pattern_contains(outer: str, inner: str) -> bool:
    """Whether every repository ``inner`` matches is also matched by ``outer``."""
    if outer == inner:
        return True
    if not _has_meta(inner):
        return fnmatch.fnmatchcase(inner, outer)
    outer_prefix, inner_prefix = _literal_prefix(outer), _literal_prefix(inner)
    if outer_prefix is not None and inner_prefix is not None:
        return inner_prefix.startswith(outer_prefix)
    return False


def patterns_overlap(first: str, second: str) -> bool:
    """Whether some repository could match both patterns (an over-approximation for general globs)."""
    if pattern_contains(first, second) or pattern_contains(second, first):
        return True
    if not _has_meta(first) or not _has_meta(second):
        return False  # a name is contained exactly or not at all
    a, b = _lead(first), _lead(second)
    return a.startswith(b) or b.startswith(a)


# -- scope drift -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternGap:
    """A pattern on one side that the other side does not cover, and the patterns it partly overlaps."""

    pattern: str
    overlaps: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScopeDrift:
    """What a site approves against what its sync token's scope map grants.

    ``over_exposed``: granted patterns no approved pattern covers (the site receives repositories nobody
    approved for it). ``missing``: approved patterns no grant covers (the site can never receive them).
    Without the parent registry's repository catalog (ARM has none) the counts are counts of patterns.
    """

    approved: tuple[str, ...]
    granted: tuple[str, ...]
    over_exposed: tuple[PatternGap, ...]
    missing: tuple[PatternGap, ...]

    @property
    def drifted(self) -> bool:
        return bool(self.over_exposed or self.missing)


def compute_drift(approved: Sequence[str], granted: Sequence[str]) -> ScopeDrift:
    approved_t, granted_t = tuple(dict.fromkeys(approved)), tuple(dict.fromkeys(granted))
    over_exposed = tuple(
        PatternGap(g, tuple(a for a in approved_t if patterns_overlap(a, g)))
        for g in granted_t
        if not any(pattern_contains(a, g) for a in approved_t)
    )
    missing = tuple(
        PatternGap(a, tuple(g for g in granted_t if patterns_overlap(a, g)))
        for a in approved_t
        if not any(pattern_contains(g, a) for g in granted_t)
    )
    return ScopeDrift(approved_t, granted_t, over_exposed, missing)


# -- notificationsList -----------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"\*|{_COMPONENT}(?:/{_COMPONENT})*(?:/\*)?")
_TAG = re.compile(r"\*|[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"\*|[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_ACTIONS = frozenset({"push", "delete", "*"})


@dataclass(frozen=True)
class NotificationRule:
    """One ``notificationsList`` entry: ``artifact:action`` with ``artifact := name[:tag][@digest]``."""

    text: str
    repository: str  # "*", a name, or "prefix/*"
    action: str  # "push", "delete" or "*"
    tag: str | None = None
    digest: str | None = None

    @property
    def every_artifact(self) -> bool:
        """Not narrowed to one tag or one digest."""
        return self.tag in (None, "*") and self.digest in (None, "*")

    @property
    def on_push(self) -> bool:
        return self.action in ("push", "*")


def parse_notification(text: str) -> NotificationRule:
    """Parse one entry the way ACR reads it: the action after the last ``:``; then ``name@digest`` when
    an ``@`` is present, else ``name:tag`` when a ``:`` is, else ``name``.

    Raises:
        InvalidInput: ``INVALID_NOTIFICATION`` naming what is wrong.
    """
    entry = text.strip() if isinstance(text, str) else ""

    def bad(why: str) -> InvalidInput:
        return InvalidInput("INVALID_NOTIFICATION", f"{text!r}: {why}")

    artifact, sep, action = entry.rpartition(":")
    if not sep or not artifact:
        raise bad("expected artifact:action (action push, delete or *)")
    action = action.lower()
    if action not in _ACTIONS:
        raise bad(f"unknown action {action!r} (push, delete or *)")
    tag: str | None = None
    digest: str | None = None
    if "@" in artifact:
        name, _, digest = artifact.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise bad(f"{digest!r} is not a digest or *")
    elif ":" in artifact:
        name, _, tag = artifact.partition(":")
        if not _TAG.fullmatch(tag):
            raise bad(f"{tag!r} is not a tag or *")
    else:
        name = artifact
    if not _NAME.fullmatch(name):
        raise bad(f"{name!r} is not a repository name, prefix/* or *")
    return NotificationRule(text=text, repository=name, action=action, tag=tag, digest=digest)


class Coverage(StrEnum):
    FULL = "full"  # every push of every tag raises an event
    PARTIAL = "partial"  # some pushes do (one tag or digest, or only some of the repositories)
    NONE = "none"


@dataclass(frozen=True)
class NotificationCoverage:
    """How a connected registry's ``notificationsList`` covers a site's approved repositories (pushes)."""

    rules: tuple[NotificationRule, ...]
    invalid: tuple[str, ...]  # the messages of entries that do not parse
    per_pattern: tuple[tuple[str, Coverage], ...]

    def patterns(self, coverage: Coverage) -> list[str]:
        return [pattern for pattern, found in self.per_pattern if found is coverage]


def notification_coverage(entries: Iterable[str], approved: Sequence[str]) -> NotificationCoverage:
    rules: list[NotificationRule] = []
    invalid: list[str] = []
    for entry in entries:
        try:
            rules.append(parse_notification(entry))
        except InvalidInput as exc:
            invalid.append(exc.detail)
    pushing = [rule for rule in rules if rule.on_push]
    per_pattern = []
    for pattern in dict.fromkeys(approved):
        if any(rule.every_artifact and pattern_contains(rule.repository, pattern) for rule in pushing):
            per_pattern.append((pattern, Coverage.FULL))
        elif any(patterns_overlap(rule.repository, pattern) for rule in pushing):
            per_pattern.append((pattern, Coverage.PARTIAL))
        else:
            per_pattern.append((pattern, Coverage.NONE))
    return NotificationCoverage(tuple(rules), tuple(invalid), tuple(per_pattern))


# -- token expiry ----------------------------------------------------------------------------------


class TokenRole(StrEnum):
    SYNC = "sync"
    CLIENT = "client"


class ExpiryState(StrEnum):
    OK = "ok"
    EXPIRING = "expiring"  # a password still valid expires within the horizon
    EXPIRED = "expired"  # every password with an expiry has expired, and none lacks one
    MISSING = "missing"  # ARM has no such token
    UNKNOWN = "unknown"  # ARM could not be read


@dataclass(frozen=True)
class TokenExpiry:
    """One token of a site, judged against the expiry horizon."""

    token_id: str
    name: str
    role: TokenRole
    state: ExpiryState
    status: str | None = None  # ARM's "enabled" / "disabled"
    expires_at: datetime | None = None
    days_left: int | None = None

    @property
    def expiring(self) -> bool:
        return self.state in (ExpiryState.EXPIRING, ExpiryState.EXPIRED)


def assess_token(token: TokenState, role: TokenRole, now: datetime, horizon: timedelta) -> TokenExpiry:
    """``expires_at`` is the earliest expiry among passwords that are still valid (the one to renew
    next); once every password has expired it is the latest expiry (when the token stopped working).
    A password without an expiry never expires; a token whose passwords all lack one is ``ok``."""
    expiries = [p.expiry for p in token.passwords if p.expiry is not None]
    valid = [expiry for expiry in expiries if expiry > now]
    never = any(p.expiry is None for p in token.passwords)
    expires_at: datetime | None = None
    state = ExpiryState.OK
    if valid:
        expires_at = min(valid)
        state = ExpiryState.EXPIRING if expires_at - now <= horizon else ExpiryState.OK
    elif expiries and not never:
        expires_at = max(expiries)
        state = ExpiryState.EXPIRED
    days_left = math.floor((expires_at - now) / timedelta(days=1)) if expires_at is not None else None
    return TokenExpiry(
        token_id=token.token_id,
        name=token.name or token_name(token.token_id),
        role=role,
        state=state,
        status=token.status,
        expires_at=expires_at,
        days_left=days_left,
    )


def unreadable_token(token_id: str, role: TokenRole, *, missing: bool) -> TokenExpiry:
    return TokenExpiry(
        token_id=token_id,
        name=token_name(token_id),
        role=role,
        state=ExpiryState.MISSING if missing else ExpiryState.UNKNOWN,
    )


@dataclass(frozen=True)
class SiteTokens:
    """A site's tokens as judged at ``checked_at``."""

    site: str
    connected_registry: str
    checked_at: datetime
    tokens: tuple[TokenExpiry, ...]

    @property
    def flagged(self) -> list[TokenExpiry]:
        return [token for token in self.tokens if token.expiring]
