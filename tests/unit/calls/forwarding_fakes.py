"""Fakes at the seams of ``procall.calls.forwarding``.

``MemoryForwardingStore`` passes the same behaviour suite as ``SqlForwardingStore``
(``tests/integration/stores/test_forwarding_store.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from procall.calls.forwarding import ForwardingRule, Reachability


class MemoryForwardingStore:
    """Forwarding rules in a dict; counts reads so tests can see what routing looked at."""

    def __init__(self) -> None:
        self.rules: dict[str, list[ForwardingRule]] = {}
        self.reads: list[str] = []

    async def rules_of(self, user_id: str) -> list[ForwardingRule]:
        """The user's rules, in the order they were set."""
        self.reads.append(user_id)
        return list(self.rules.get(user_id, ()))

    async def replace(self, user_id: str, rules: Sequence[ForwardingRule]) -> None:
        """Replace all of the user's rules (an empty list removes them)."""
        if rules:
            self.rules[user_id] = list(rules)
        else:
            self.rules.pop(user_id, None)


class FakeDelegations:
    """``calls.forward`` grants as (actor, principal) pairs."""

    def __init__(self, grants: Iterable[tuple[str, str]] = ()) -> None:
        self.grants = set(grants)

    async def may_forward(self, actor_user_id: str, principal_user_id: str) -> bool:
        """Whether the pair was granted."""
        return (actor_user_id, principal_user_id) in self.grants


class FakeUsers:
    """A directory of known user ids."""

    def __init__(self, user_ids: Iterable[str]) -> None:
        self.user_ids = set(user_ids)

    async def unknown_users(self, user_ids: Sequence[str]) -> list[str]:
        """The ids that name no known user."""
        return [user_id for user_id in user_ids if user_id not in self.user_ids]


class FakeReachability:
    """Who is online and who is busy; records whom routing asked about."""

    def __init__(self, offline: Iterable[str] = (), busy: Iterable[str] = ()) -> None:
        self.offline = set(offline)
        self.busy = set(busy)
        self.asked: list[str] = []

    async def __call__(self, user_id: str) -> Reachability:
        """The user's reachability (online unless listed offline)."""
        self.asked.append(user_id)
        return Reachability(online=user_id not in self.offline, busy=user_id in self.busy)
