"""A short per-process cache in front of ARM reads: a decorator of any :class:`ConnectedRegistryReader`.

Every check of every release at a site asks ARM about the same connected registry; ARM throttles
reads per subscription. A connected registry's state is cached briefly (its lastSyncTime moves on
the site's own schedule anyway), a sync token and scope map longer (they change rarely).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from shared.domain.inventory import TokenState
from shared.domain.observations import ConnectedRegistryState, SyncScope
from shared.ports import Clock, ConnectedRegistryReader

T = TypeVar("T")
STATE_TTL = timedelta(seconds=30)
SCOPE_TTL = timedelta(minutes=5)


class _TtlCache(Generic[T]):
    def __init__(self, ttl: timedelta) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[datetime, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, now: datetime) -> T | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or not entry[0] <= now < entry[0] + self._ttl:
            return None
        return entry[1]

    def put(self, key: str, now: datetime, value: T) -> None:
        with self._lock:
            self._entries[key] = (now, value)


class CachedArmReader:
    """:class:`ConnectedRegistryReader` that remembers answers for a short while (errors are not cached)."""

    def __init__(
        self,
        inner: ConnectedRegistryReader,
        clock: Clock,
        *,
        state_ttl: timedelta = STATE_TTL,
        scope_ttl: timedelta = SCOPE_TTL,
    ) -> None:
        self._inner, self._clock = inner, clock
        self._states: _TtlCache[ConnectedRegistryState] = _TtlCache(state_ttl)
        self._scopes: _TtlCache[SyncScope] = _TtlCache(scope_ttl)
        self._tokens: _TtlCache[TokenState] = _TtlCache(scope_ttl)

    def get_connected_registry(self, resource_id: str) -> ConnectedRegistryState:
        now = self._clock.now()
        cached = self._states.get(resource_id.lower(), now)
        if cached is None:
            cached = self._inner.get_connected_registry(resource_id)
            self._states.put(resource_id.lower(), now, cached)
        return cached

    def get_sync_scope(self, token_id: str) -> SyncScope:
        now = self._clock.now()
        cached = self._scopes.get(token_id.lower(), now)
        if cached is None:
            cached = self._inner.get_sync_scope(token_id)
            self._scopes.put(token_id.lower(), now, cached)
        return cached

    def get_token(self, token_id: str) -> TokenState:
        """A sync or client token (status, password expiries), cached like sync scopes (token expiry checks)."""
        now = self._clock.now()
        cached = self._tokens.get(token_id.lower(), now)
        if cached is None:
            cached = self._inner.get_token(token_id)
            self._tokens.put(token_id.lower(), now, cached)
        return cached

    def close(self) -> None:
        closer = getattr(self._inner, "close", None)
        if closer is not None:
            closer()
