"""Presence reads and contact lists name only users the Directory knows: NOT_FOUND naming
the first unknown one; reads go on while the Directory is down, contact writes do not."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from procall.errors import NotFound, Unavailable
from procall.presence.manager import PresenceManager
from tests.unit.presence.fakes import (
    MemoryContactStore,
    MemoryDelegationChecker,
    MemoryPresenceStore,
    RecordingNotifier,
)


class FakeUsers:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users  # username -> user id
        self.down = False
        self.asked: list[str] = []

    async def unknown_users(self, user_ids: Sequence[str]) -> list[str]:
        if self.down:
            raise Unavailable.backend("Directory")
        self.asked.extend(user_ids)
        known = set(self.users.values())
        return [u for u in user_ids if u not in known]

    async def user_ids_of(self, usernames: Sequence[str]) -> list[str | None]:
        if self.down:
            raise Unavailable.backend("Directory")
        return [self.users.get(name.lower()) for name in usernames]


@pytest.fixture
def world() -> tuple[PresenceManager, FakeUsers, MemoryContactStore]:
    users = FakeUsers({"alice": "u-alice", "bob": "u-bob", "carol": "u-carol"})
    contacts = MemoryContactStore({})
    manager = PresenceManager(
        server_id="uc-1",
        store=MemoryPresenceStore(),
        contacts=contacts,
        delegations=MemoryDelegationChecker(set()),
        notifier=RecordingNotifier(peers=[]),
        clock=lambda: 1000.0,
        interest_ttl=5,
        users=users,
    )
    return manager, users, contacts


async def test_reads_of_unknown_users_are_not_found(
    world: tuple[PresenceManager, FakeUsers, MemoryContactStore],
) -> None:
    manager, users, _ = world
    with pytest.raises(NotFound) as refused:
        await manager.read(["u-bob", "u-ghost"])
    assert refused.value.metadata == {"user_id": "u-ghost"}
    assert "u-ghost" in str(refused.value)
    assert [p.user_id for p in await manager.read(["u-bob", "u-carol"])] == ["u-bob", "u-carol"]
    users.asked.clear()
    await manager.read(["u-bob"])  # known users are remembered: no second Directory call
    assert users.asked == []


async def test_reads_go_on_while_the_directory_is_down_but_contact_writes_wait(
    world: tuple[PresenceManager, FakeUsers, MemoryContactStore],
) -> None:
    manager, users, contacts = world
    users.down = True
    assert [p.user_id for p in await manager.read(["u-bob"])] == ["u-bob"]
    with pytest.raises(Unavailable):
        await manager.add_contacts("u-alice", ["u-carol"])
    assert contacts.lists.get("u-alice", []) == []


async def test_contacts_refuse_unknown_users_and_resolve_usernames(
    world: tuple[PresenceManager, FakeUsers, MemoryContactStore],
) -> None:
    manager, _, contacts = world
    with pytest.raises(NotFound):
        await manager.add_contacts("u-alice", ["u-bob", "u-ghost"])
    assert contacts.lists.get("u-alice", []) == []
    with pytest.raises(NotFound) as refused:
        await manager.resolve_usernames(["bob", "ghost"])
    assert refused.value.metadata == {"username": "ghost"}
    ids = await manager.resolve_usernames(["Bob", "carol"])
    assert ids == ["u-bob", "u-carol"]
    added = await manager.add_contacts("u-alice", ["u-carol"], usernames=["bob", "carol"])
    assert [p.user_id for p in added] == ["u-carol", "u-bob"]  # ids first, once each
    assert contacts.lists["u-alice"] == ["u-carol", "u-bob"]
    with pytest.raises(NotFound):
        await manager.add_contacts("u-alice", [], usernames=["ghost"])
    assert contacts.lists["u-alice"] == ["u-carol", "u-bob"]
