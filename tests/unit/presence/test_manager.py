"""Presence rules with fakes at the seams: coalescing, permissions, outages, dead servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import replace

import pytest

from procall.errors import InvalidArgument, PermissionDenied, Unavailable
from procall.presence.manager import PresenceManager
from procall.presence.model import Availability, Capabilities, Presence, PresenceChange


class FakeStore:
    def __init__(self) -> None:
        self.data: dict[str, Presence] = {}
        self.down = False
        self.interest: dict[str, set[str]] = {}
        self.alive: set[str] = set()
        self.version = 0

    def _check(self) -> None:
        if self.down:
            raise Unavailable.backend("Redis")

    async def update(
        self, user_id: str, change: PresenceChange, set_by: str, server_id: str = ""
    ) -> Presence:
        self._check()
        self.version += 1
        current = self.data.get(user_id, Presence(user_id))
        updated = replace(
            current,
            availability=change.availability or current.availability,
            note=current.note if change.note is None else change.note,
            version=self.version,
            set_by=set_by,
            server_id=server_id if change.session_capabilities else current.server_id,
        )
        if change.session_capabilities and updated.availability is Availability.OFFLINE:
            updated = replace(updated, availability=Availability.AVAILABLE)
        self.data[user_id] = updated
        return updated

    async def mark_offline_if_on(self, user_ids: Sequence[str], server_id: str) -> list[Presence]:
        self._check()
        changed = []
        for user_id in user_ids:
            current = self.data.get(user_id)
            if current and current.server_id == server_id:
                self.version += 1
                current = replace(current, availability=Availability.OFFLINE, version=self.version)
                self.data[user_id] = current
                changed.append(current)
        return changed

    async def get_many(self, user_ids: Sequence[str]) -> list[Presence]:
        self._check()
        return [self.data.get(u, Presence(u)) for u in user_ids]

    async def missing(self, user_ids: Sequence[str]) -> list[str]:
        self._check()
        return [u for u in user_ids if u not in self.data]

    async def add_interest(self, server_id: str, user_ids: Iterable[str], ttl: float) -> None:
        self._check()
        self.interest.setdefault(server_id, set()).update(user_ids)

    async def remove_interest(self, server_id: str, user_ids: Iterable[str]) -> None:
        self._check()
        self.interest.setdefault(server_id, set()).difference_update(user_ids)

    async def interested_servers(self, user_id: str, server_ids: Sequence[str]) -> list[str]:
        self._check()
        return [s for s in server_ids if user_id in self.interest.get(s, set())]

    async def interested_servers_many(
        self, user_ids: Sequence[str], server_ids: Sequence[str]
    ) -> list[list[str]]:
        return [await self.interested_servers(u, server_ids) for u in user_ids]

    async def heartbeat(self, server_id: str, ttl: float) -> bool:
        self._check()
        intact = server_id in self.alive
        self.alive.add(server_id)
        return intact

    def restart(self) -> None:
        """Redis restarted empty."""
        self.data.clear()
        self.interest.clear()
        self.alive.clear()


class FakeContacts:
    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists

    async def contacts_of(self, user_id: str) -> list[str]:
        return list(self.lists.get(user_id, []))

    async def add(self, user_id: str, contact_ids: Sequence[str]) -> None:
        self.lists.setdefault(user_id, []).extend(contact_ids)

    async def remove(self, user_id: str, contact_ids: Sequence[str]) -> None:
        self.lists[user_id] = [c for c in self.lists.get(user_id, []) if c not in contact_ids]


class FakeDelegations:
    def __init__(self, allowed: set[tuple[str, str]]) -> None:
        self.allowed = allowed

    async def may_set_presence(self, actor_user_id: str, principal_user_id: str) -> bool:
        return (actor_user_id, principal_user_id) in self.allowed


class FakeNotifier:
    def __init__(self, peers: list[str]) -> None:
        self.peers = peers
        self.local: list[tuple[frozenset[str], Presence]] = []
        self.remote: list[tuple[str, Presence]] = []

    async def to_local_users(self, user_ids: Iterable[str], presence: Presence) -> None:
        self.local.append((frozenset(user_ids), presence))

    def peer_servers(self) -> list[str]:
        return list(self.peers)

    def to_servers(self, server_ids: Iterable[str], presence: Presence) -> None:
        self.remote.extend((s, presence) for s in server_ids)


@pytest.fixture
def parts() -> tuple[PresenceManager, FakeStore, FakeNotifier]:
    store = FakeStore()
    notifier = FakeNotifier(peers=["uc-2"])
    manager = PresenceManager(
        server_id="uc-1",
        store=store,
        contacts=FakeContacts({"alice": ["bob", "carol"]}),
        delegations=FakeDelegations({("grace", "frank")}),
        notifier=notifier,
        clock=lambda: 1000.0,
        interest_ttl=5,
    )
    return manager, store, notifier


async def test_a_burst_of_changes_is_coalesced_to_the_newest(
    parts: tuple[PresenceManager, FakeStore, FakeNotifier],
) -> None:
    manager, store, notifier = parts
    await manager.start_watching("alice")
    store.interest["uc-2"] = {"carol"}
    for note in ("1", "2", "3", "4", "5"):
        await manager.set_presence("carol", "carol", PresenceChange(note=note))
    await manager.flush()
    to_alice = [p.note for users, p in notifier.local if "alice" in users]
    assert to_alice == ["5"]
    assert [(s, p.note) for s, p in notifier.remote] == [("uc-2", "5")]


async def test_changes_reach_only_interested_peers(
    parts: tuple[PresenceManager, FakeStore, FakeNotifier],
) -> None:
    manager, store, notifier = parts
    await manager.set_presence("dave", "dave", PresenceChange(availability=Availability.BUSY))
    await manager.flush()
    assert notifier.remote == []


async def test_delegation_and_validation(
    parts: tuple[PresenceManager, FakeStore, FakeNotifier],
) -> None:
    manager, _, _ = parts
    done = await manager.set_presence("grace", "frank", PresenceChange(Availability.AWAY))
    assert done.set_by == "grace"
    with pytest.raises(PermissionDenied):
        await manager.set_presence("mallory", "frank", PresenceChange(Availability.AWAY))
    with pytest.raises(InvalidArgument):
        await manager.set_presence("frank", "frank", PresenceChange(Availability.UNKNOWN))
    with pytest.raises(InvalidArgument):
        await manager.set_presence("frank", "frank", PresenceChange(note="x" * 257))


async def test_store_outage_keeps_local_presence_and_republishes_after(
    parts: tuple[PresenceManager, FakeStore, FakeNotifier],
) -> None:
    manager, store, notifier = parts
    await manager.start_watching("alice")
    await manager.session_started("carol", "s1", Capabilities(chat=True))
    store.down = True
    await manager.set_presence("carol", "carol", PresenceChange(Availability.BUSY, note="no redis"))
    await manager.flush()
    assert notifier.local[-1][1].note == "no redis" and "alice" in notifier.local[-1][0]
    assert manager.degraded
    unknown = await manager.get_many(["zoe"])
    assert unknown[0].availability is Availability.UNKNOWN
    store.down = False
    store.restart()  # Redis came back empty
    await manager.upkeep()
    assert store.data["carol"].availability is Availability.BUSY
    assert store.data["carol"].note == "no redis"
    assert not manager.degraded


async def test_users_of_a_dead_server_go_offline_for_watchers(
    parts: tuple[PresenceManager, FakeStore, FakeNotifier],
) -> None:
    manager, store, notifier = parts
    await manager.start_watching("alice")
    store.data["bob"] = Presence("bob", Availability.AVAILABLE, version=1, server_id="uc-2")
    notifier.peers = []  # uc-2 is gone from the topology
    (read,) = await manager.get_many(["bob"])
    assert read.availability is Availability.OFFLINE
    await manager.peer_lost("uc-2")
    await manager.flush()
    assert notifier.local[-1][1].availability is Availability.OFFLINE
    assert "alice" in notifier.local[-1][0]


async def test_older_versions_from_peers_are_dropped(
    parts: tuple[PresenceManager, FakeStore, FakeNotifier],
) -> None:
    manager, _, notifier = parts
    await manager.start_watching("alice")
    await manager.received(Presence("bob", Availability.BUSY, version=5))
    await manager.received(Presence("bob", Availability.AWAY, version=4))
    await asyncio.sleep(0)
    assert [p.availability for _, p in notifier.local] == [Availability.BUSY]


async def test_after_a_store_restart_the_upkeep_writes_presence_and_interest_back(
    parts: tuple[PresenceManager, FakeStore, FakeNotifier],
) -> None:
    manager, store, _ = parts
    await manager.start_watching("alice")  # alice (here) watches bob and carol
    await manager.session_started("alice", "s1", Capabilities(chat=True))
    await manager.set_presence("alice", "alice", PresenceChange(Availability.BUSY, note="x"))
    await manager.upkeep()
    store.restart()
    await manager.upkeep()
    assert store.data["alice"].availability is Availability.BUSY
    assert store.data["alice"].note == "x"
    assert store.interest["uc-1"] == {"bob", "carol"}
