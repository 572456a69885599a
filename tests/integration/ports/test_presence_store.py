"""One behaviour suite for the ``PresenceStore`` port, run against the in-memory fake of the
presence unit tests (``tests/unit/presence/fakes.py``) and against ``RedisPresenceStore`` in a
real Redis: the direct tests of the Redis store, and the check that the fake does not drift.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from procall.errors import Unavailable
from procall.launch.redis import free_port
from procall.presence.model import (
    Availability,
    Capabilities,
    PresenceChange,
    TelephonyState,
)
from procall.presence.ports import PresenceStore
from procall.storage.redis.presence import RedisPresenceStore
from tests.unit.presence.fakes import MemoryPresenceStore

CHAT = Capabilities(chat=True)
AUDIO = Capabilities(audio=True)


@dataclass
class Subject:
    """A ``PresenceStore`` under test and the faults the suite can cause in it."""

    store: PresenceStore
    #: What a Redis restart without persistence does: everything is gone.
    lose_everything: Callable[[], Awaitable[None]]
    #: A store whose Redis cannot be reached.
    unreachable: Callable[[], PresenceStore]


@pytest.fixture(params=["memory", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "memory":
        memory = MemoryPresenceStore()

        async def restart() -> None:
            memory.restart()

        def down() -> PresenceStore:
            broken = MemoryPresenceStore()
            broken.down = True
            return broken

        yield Subject(memory, restart, down)
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    dead = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )

    async def flush() -> None:
        await client.flushall()

    try:
        # batches on a tick, as a UCServer runs it
        store = RedisPresenceStore(client, tick=0.005)
        yield Subject(store, flush, lambda: RedisPresenceStore(dead))
    finally:
        await client.aclose()
        await dead.aclose()


async def test_a_user_never_seen_is_offline_and_missing(subject: Subject) -> None:
    store = subject.store
    (zoe,) = await store.get_many(["zoe"])
    assert (zoe.user_id, zoe.availability, zoe.version) == ("zoe", Availability.OFFLINE, 0)
    assert await store.missing(["zoe"]) == ["zoe"]
    assert await store.missing([]) == []


async def test_a_change_is_stored_versioned_and_read_back(subject: Subject) -> None:
    store = subject.store
    before = time.time()
    first = await store.update(
        "bob", PresenceChange(Availability.BUSY, note="meeting"), set_by="grace"
    )
    assert (first.availability, first.note, first.set_by) == (Availability.BUSY, "meeting", "grace")
    assert first.version > 0
    assert before - 1 <= first.update_time <= time.time() + 1
    second = await store.update("bob", PresenceChange(telephony=TelephonyState.RINGING), "")
    assert second.version > first.version
    assert (second.availability, second.note) == (Availability.BUSY, "meeting"), "kept"
    assert (second.telephony, second.set_by) == (TelephonyState.RINGING, "")
    assert await store.get_many(["bob", "zoe"]) == [second, (await store.get_many(["zoe"]))[0]]
    assert await store.missing(["bob", "zoe"]) == ["zoe"]


async def test_only_visible_changes_get_a_new_version(subject: Subject) -> None:
    """A second client of a user, or a presence set to what it is, is never announced twice."""
    store = subject.store
    chat = Capabilities(chat=True)
    first = await store.update("u1", PresenceChange(session_capabilities=("s1", chat)), "", "uc-1")
    assert first.availability is Availability.AVAILABLE and first.version > 0

    # a second client with the same capabilities comes and goes: nothing to tell
    second = await store.update("u1", PresenceChange(session_capabilities=("s2", chat)), "", "uc-1")
    assert (second.version, second.update_time) == (first.version, first.update_time)
    gone = await store.update("u1", PresenceChange(ended_session="s2"), "", "uc-1")
    assert gone.version == first.version and gone.availability is Availability.AVAILABLE
    same = await store.update("u1", PresenceChange(availability=Availability.AVAILABLE), "")
    assert same.version == first.version

    # what a watcher sees changes: a new version each time
    audio = Capabilities(chat=True, audio=True)
    richer = await store.update("u1", PresenceChange(session_capabilities=("s3", audio)), "")
    assert richer.version > first.version and richer.capabilities == audio
    noted = await store.update("u1", PresenceChange(note="lunch"), "")
    assert noted.version > richer.version
    by_delegate = await store.update("u1", PresenceChange(note="lunch"), "u2")
    assert by_delegate.version > noted.version and by_delegate.set_by == "u2"
    await store.update("u1", PresenceChange(ended_session="s3"), "")
    last = await store.update("u1", PresenceChange(ended_session="s1"), "")
    assert last.availability is Availability.OFFLINE
    (stored,) = await store.get_many(["u1"])
    assert stored.version == last.version


async def test_the_update_time_is_the_time_of_the_change(subject: Subject) -> None:
    # many changes, so that a time with few microseconds (misread as tenths) shows up
    for i in range(200):
        before = time.time()
        changed = await subject.store.update("bob", PresenceChange(note=str(i)), "")
        assert before - 0.05 <= changed.update_time <= time.time() + 0.05, changed.update_time


async def test_capabilities_are_the_union_of_the_sessions_and_the_last_one_ends_online(
    subject: Subject,
) -> None:
    store = subject.store
    first = await store.update("bob", PresenceChange(session_capabilities=("s1", CHAT)), "", "uc-1")
    assert first.availability is Availability.AVAILABLE, "a session makes an offline user online"
    assert (first.capabilities, first.server_id) == (CHAT, "uc-1")
    await store.update("bob", PresenceChange(Availability.AWAY), "")
    both = await store.update("bob", PresenceChange(session_capabilities=("s2", AUDIO)), "", "uc-1")
    assert both.availability is Availability.AWAY, "an online user keeps the availability"
    assert both.capabilities == CHAT.union(AUDIO)
    one = await store.update("bob", PresenceChange(ended_session="s1"), "")
    assert (one.availability, one.capabilities) == (Availability.AWAY, AUDIO)
    none = await store.update("bob", PresenceChange(ended_session="s2"), "")
    assert (none.availability, none.capabilities) == (Availability.OFFLINE, Capabilities())


async def test_users_of_a_dead_server_go_offline_once(subject: Subject) -> None:
    store = subject.store
    on_1 = PresenceChange(Availability.BUSY, telephony=TelephonyState.ON_THE_PHONE)
    await store.update("bob", on_1, "grace")
    await store.update("bob", PresenceChange(session_capabilities=("s1", CHAT)), "", "uc-1")
    await store.update("carol", PresenceChange(session_capabilities=("s2", CHAT)), "", "uc-2")
    (bob,) = await store.mark_offline_if_on(["bob", "carol", "zoe"], "uc-1")
    assert (bob.user_id, bob.availability, bob.telephony) == (
        "bob",
        Availability.OFFLINE,
        TelephonyState.IDLE,
    )
    assert (bob.capabilities, bob.set_by) == (Capabilities(), "")
    assert await store.mark_offline_if_on(["bob"], "uc-1") == [], "already offline"
    (carol,) = await store.get_many(["carol"])
    assert carol.availability is Availability.AVAILABLE, "on another server"


async def test_interest_is_per_server_and_removable(subject: Subject) -> None:
    store = subject.store
    servers = ["uc-1", "uc-2", "uc-3"]
    await store.add_interest("uc-1", ["bob", "carol"], 30.0)
    await store.add_interest("uc-2", ["bob"], 30.0)
    await store.add_interest("uc-3", [], 30.0)
    assert await store.interested_servers("bob", servers) == ["uc-1", "uc-2"]
    assert await store.interested_servers_many(["bob", "carol", "zoe"], servers) == [
        ["uc-1", "uc-2"],
        ["uc-1"],
        [],
    ]
    await store.remove_interest("uc-1", ["bob"])
    await store.remove_interest("uc-1", [])
    assert await store.interested_servers("bob", servers) == ["uc-2"]
    assert await store.interested_servers_many([], servers) == []
    assert await store.interested_servers_many(["bob"], []) == [[]]


async def test_a_change_says_which_of_the_given_servers_watch_the_user(subject: Subject) -> None:
    store = subject.store
    await store.add_interest("uc-1", ["bob", "carol"], 30.0)
    await store.add_interest("uc-2", ["bob"], 30.0)
    bob, watching = await store.update_routed(
        "bob", PresenceChange(Availability.BUSY, note="n"), "", "uc-3", ["uc-1", "uc-2", "uc-4"]
    )
    assert (bob.availability, bob.note, watching) == (Availability.BUSY, "n", ["uc-1", "uc-2"])
    assert (await store.get_many(["bob"]))[0] == bob
    _, nobody = await store.update_routed("bob", PresenceChange(note="m"), "", "uc-3", [])
    assert nobody == []


async def test_concurrent_changes_each_get_their_own_answer(subject: Subject) -> None:
    store = subject.store
    await store.add_interest("uc-1", ["u0", "u2"], 30.0)
    await store.add_interest("uc-2", ["u1", "u2"], 30.0)
    peers = [["uc-1"], ["uc-1", "uc-2"], ["uc-2"], ["uc-1", "uc-2"]]
    session = ("s1", Capabilities(chat=True))
    answers = await asyncio.gather(
        *(
            store.update_routed(
                f"u{i % 3}",
                PresenceChange(note=f"v{i}", session_capabilities=session if i == 3 else None),
                "",
                "uc-3",
                peers[i],
            )
            for i in range(4)
        )
    )
    assert [a[1] for a in answers] == [["uc-1"], ["uc-2"], ["uc-2"], ["uc-1"]]
    assert [a[0].note for a in answers] == ["v0", "v1", "v2", "v3"]
    assert answers[3][0].version > answers[0][0].version, "u0 changed twice, in order"
    assert answers[3][0].capabilities == Capabilities(chat=True)
    assert answers[3][0].availability is Availability.AVAILABLE


async def test_a_heartbeat_tells_whether_the_servers_state_was_lost(subject: Subject) -> None:
    store = subject.store
    assert not await store.heartbeat("uc-1", 30.0), "first heartbeat: nothing was there"
    assert await store.heartbeat("uc-1", 30.0)
    await store.update("bob", PresenceChange(Availability.BUSY), "")
    await store.add_interest("uc-1", ["carol"], 30.0)
    await subject.lose_everything()
    assert not await store.heartbeat("uc-1", 30.0)
    assert await store.missing(["bob"]) == ["bob"]
    assert await store.interested_servers("carol", ["uc-1"]) == []


CALLS: dict[str, Callable[[PresenceStore], Awaitable[Any]]] = {
    "update": lambda s: s.update("a", PresenceChange(note="x"), ""),
    "update_routed": lambda s: s.update_routed("a", PresenceChange(note="x"), "", "", ["uc-1"]),
    "mark_offline_if_on": lambda s: s.mark_offline_if_on(["a"], "uc-1"),
    "get_many": lambda s: s.get_many(["a"]),
    "missing": lambda s: s.missing(["a"]),
    "add_interest": lambda s: s.add_interest("uc-1", ["a"], 1.0),
    "remove_interest": lambda s: s.remove_interest("uc-1", ["a"]),
    "interested_servers": lambda s: s.interested_servers("a", ["uc-1"]),
    "interested_servers_many": lambda s: s.interested_servers_many(["a"], ["uc-1"]),
    "heartbeat": lambda s: s.heartbeat("uc-1", 1.0),
}


async def test_an_unreachable_store_is_unavailable_naming_redis(subject: Subject) -> None:
    broken = subject.unreachable()
    for method, call in CALLS.items():
        with pytest.raises(Unavailable) as caught:
            await call(broken)
        assert caught.value.metadata["backend"] == "Redis", method


def test_the_suite_calls_every_method_of_the_port() -> None:
    assert set(CALLS) == {name for name in vars(PresenceStore) if not name.startswith("_")}
