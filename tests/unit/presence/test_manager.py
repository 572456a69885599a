"""Presence rules with fakes at the seams: coalescing, permissions, outages, dead servers."""

from __future__ import annotations

import asyncio

import pytest

from procall.errors import InvalidArgument, PermissionDenied
from procall.presence.manager import PresenceManager
from procall.presence.model import Availability, Capabilities, Presence, PresenceChange
from tests.unit.presence.fakes import (
    MemoryContactStore,
    MemoryDelegationChecker,
    MemoryPresenceStore,
    RecordingNotifier,
)


@pytest.fixture
def parts() -> tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier]:
    store = MemoryPresenceStore()
    notifier = RecordingNotifier(peers=["uc-2"])
    manager = PresenceManager(
        server_id="uc-1",
        store=store,
        contacts=MemoryContactStore({"alice": ["bob", "carol"]}),
        delegations=MemoryDelegationChecker({("grace", "frank")}),
        notifier=notifier,
        clock=lambda: 1000.0,
        interest_ttl=5,
    )
    return manager, store, notifier


async def test_a_burst_of_changes_is_coalesced_to_the_newest(
    parts: tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier],
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
    parts: tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier],
) -> None:
    manager, store, notifier = parts
    await manager.set_presence("dave", "dave", PresenceChange(availability=Availability.BUSY))
    await manager.flush()
    assert notifier.remote == []


async def test_delegation_and_validation(
    parts: tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier],
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
    parts: tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier],
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
    parts: tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier],
) -> None:
    manager, store, notifier = parts
    await manager.start_watching("alice")
    store.put(Presence("bob", Availability.AVAILABLE, version=1, server_id="uc-2"))
    notifier.peers = []  # uc-2 is gone from the topology
    (read,) = await manager.get_many(["bob"])
    assert read.availability is Availability.OFFLINE
    await manager.peer_lost("uc-2")
    await manager.flush()
    assert notifier.local[-1][1].availability is Availability.OFFLINE
    assert "alice" in notifier.local[-1][0]


async def test_older_versions_from_peers_are_dropped(
    parts: tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier],
) -> None:
    manager, _, notifier = parts
    await manager.start_watching("alice")
    await manager.received(Presence("bob", Availability.BUSY, version=5))
    await manager.received(Presence("bob", Availability.AWAY, version=4))
    await asyncio.sleep(0)
    assert [p.availability for _, p in notifier.local] == [Availability.BUSY]


async def test_after_a_store_restart_the_upkeep_writes_presence_and_interest_back(
    parts: tuple[PresenceManager, MemoryPresenceStore, RecordingNotifier],
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
