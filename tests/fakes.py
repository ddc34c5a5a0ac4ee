"""Shared test doubles, in one place. Real adapters are preferred everywhere; these stand in only
for time and for injecting failures at a port."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain.inventory import TokenState
from shared.domain.observations import ConnectedRegistryState, SyncScope
from shared.errors import QueueUnavailable, UpstreamUnavailable
from shared.ports import JobQueue, OutgoingMessage, ReceivedMessage, SendReport

FIXTURES = Path(__file__).parent / "fixtures"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


class FailingSends:
    """Wraps a real queue; the first ``failures`` sends raise as if Service Bus were unreachable."""

    def __init__(self, inner: JobQueue, failures: int = 1) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> SendReport:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise QueueUnavailable("injected: queue unreachable")
        return self.inner.send_messages(messages)

    def receive_messages(
        self, *, max_count: int = 1, max_wait: float = 0.0, dead_letter: bool = False
    ) -> list[ReceivedMessage]:
        return self.inner.receive_messages(max_count=max_count, max_wait=max_wait, dead_letter=dead_letter)

    def complete_message(self, message: ReceivedMessage) -> None:
        self.inner.complete_message(message)

    def abandon_message(self, message: ReceivedMessage) -> None:
        self.inner.abandon_message(message)

    def dead_letter_message(self, message: ReceivedMessage, *, reason: str, description: str = "") -> None:
        self.inner.dead_letter_message(message, reason=reason, description=description)


def load_event(name: str) -> dict[str, Any]:
    """The single event in a fixture delivery (``tests/fixtures/events/<name>.json``)."""
    events = json.loads((FIXTURES / "events" / f"{name}.json").read_text())
    assert len(events) == 1
    return events[0]  # type: ignore[no-any-return]


def delivery(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


class StaticTokenCredential:
    """A TokenCredential for loopback Azure fixtures: always the same bearer token; remembers the scopes
    it was asked for."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, 4_102_444_800)  # 2100-01-01: never needs refreshing


class FakeArmReader:
    """ARM as the services read it, answering from the functions a test gives. Tests of the ARM adapter
    itself use the real SDK against ``tests/support/arm_server.py``; this stands in where a test needs
    ARM states of its own.

    Args:
        state: the connected registry for a resource id.
        scope: the sync scope for a token id; without it, scope and token reads are unavailable.
        unavailable: resource ids whose reads fail as if ARM were throttled.
    """

    def __init__(
        self,
        state: Callable[[str], ConnectedRegistryState],
        *,
        scope: Callable[[str], SyncScope] | None = None,
        unavailable: Callable[[str], bool] = lambda resource_id: False,
    ) -> None:
        self._state, self._scope, self._unavailable = state, scope, unavailable

    def get_connected_registry(self, resource_id: str) -> ConnectedRegistryState:
        if self._unavailable(resource_id):
            raise UpstreamUnavailable("injected: ARM throttled")
        return self._state(resource_id)

    def get_sync_scope(self, token_id: str) -> SyncScope:
        if self._scope is None:
            raise UpstreamUnavailable("injected: no sync scope in this test")
        return self._scope(token_id)

    def get_token(self, token_id: str) -> TokenState:
        return TokenState.from_sync_scope(self.get_sync_scope(token_id))


class CountingSink:
    """An EventSink that keeps what it was asked to publish (for tests that count announcements)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, events: Sequence[Any]) -> None:
        self.events.extend(events)


class RecordingStore:
    """The store under test, noting which row listings a caller made and how many rows they returned."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.listed: list[tuple[str, int]] = []

    @property
    def rows(self) -> int:
        """How many rows the listings returned in all."""
        return sum(count for _, count in self.listed)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name not in ("list_site_syncs", "list_due_site_syncs"):
            return target

        def listing(*args: Any, **kwargs: Any) -> Any:
            rows = target(*args, **kwargs)
            self.listed.append((name, len(rows)))
            return rows

        return listing
