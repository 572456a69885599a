"""One behaviour suite for the ``ChatState`` port, run against the in-memory fake that the
chat unit tests use (``tests/unit/chat/fakes.py``) and against ``RedisChatState`` in a real
Redis, so that the fake cannot drift from the store it stands in for.

What only Redis has (TTLs, key layout, cluster slots, concurrency across clients, a killed
server) stays in ``tests/integration/chatstate``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from procall.chat.ports import ChatState, SendConfirmation
from procall.errors import Unavailable
from procall.launch.redis import free_port
from procall.storage.redis.chat import RedisChatState
from tests.unit.chat.fakes import MemoryChatState

TTL = 60.0


@dataclass
class Subject:
    """A ``ChatState`` under test and the faults the suite can cause in it."""

    state: ChatState
    #: What a Redis restart without persistence does: everything is gone.
    lose_everything: Callable[[], Awaitable[None]]
    #: A ``ChatState`` whose Redis cannot be reached.
    unreachable: Callable[[], Awaitable[ChatState]]


@pytest.fixture(params=["memory", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "memory":
        memory = MemoryChatState()

        async def restart() -> None:
            memory.restart()

        async def down() -> ChatState:
            broken = MemoryChatState()
            broken.down = True
            return broken

        yield Subject(memory, restart, down)
        return
    url = request.getfixturevalue("redis_url")
    client = aioredis.Redis.from_url(url)
    dead = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )

    async def flush() -> None:
        await client.flushall()

    async def unreachable() -> ChatState:
        return RedisChatState(dead)

    try:
        yield Subject(RedisChatState(client), flush, unreachable)
    finally:
        await client.aclose()
        await dead.aclose()


async def allocate_id(
    state: ChatState, request_id: str, seed: int | None = None, cid: str = "c1"
) -> int:
    allocation = await state.allocate(cid, "alice", request_id, time.time(), seed, TTL)
    assert allocation is not None and not allocation.duplicate
    return allocation.message_id


async def test_ids_start_after_the_seed_and_follow_each_other(subject: Subject) -> None:
    state = subject.state
    assert await state.allocate("c1", "alice", "r0", 1.0, None, TTL) is None
    assert await allocate_id(state, "r1", seed=41) == 42
    assert [await allocate_id(state, f"r{i}") for i in range(2, 5)] == [43, 44, 45]
    assert await allocate_id(state, "r5", seed=0) == 46, "a lower seed never goes back"
    assert await allocate_id(state, "x1", seed=0, cid="c2") == 1, "sequences are per conversation"


async def test_a_repeated_request_returns_the_first_allocation(subject: Subject) -> None:
    state = subject.state
    now = 1_712_345_678.123_456_7
    first = await state.allocate("c1", "alice", "req", now, 9, TTL)
    assert first is not None and (first.message_id, first.duplicate) == (10, False)
    assert first.created_at == now and not first.persisted
    again = await state.allocate("c1", "alice", "req", now + 5, None, TTL)
    assert again is not None
    assert (again.message_id, again.created_at, again.duplicate) == (10, now, True)
    assert not again.persisted
    assert await allocate_id(state, "next") == 11, "a duplicate does not advance the sequence"


async def test_request_ids_are_per_sender_and_conversation(subject: Subject) -> None:
    state = subject.state
    a = await state.allocate("c1", "a:b", "c", 1.0, 0, TTL)
    b = await state.allocate("c1", "a", "b:c", 1.0, None, TTL)
    c = await state.allocate("c2", "a:b", "c", 1.0, 0, TTL)
    assert a is not None and b is not None and c is not None
    assert (a.duplicate, b.duplicate, c.duplicate) == (False, False, False)
    assert (a.message_id, b.message_id, c.message_id) == (1, 2, 1)


async def test_confirm_marks_the_request_persisted_and_creates_nothing(subject: Subject) -> None:
    state = subject.state
    await state.allocate("c1", "alice", "req", 1.0, 0, TTL)
    await state.confirm("c1", "alice", "req", TTL)
    again = await state.allocate("c1", "alice", "req", 2.0, None, TTL)
    assert again is not None and again.duplicate and again.persisted
    await state.confirm("c1", "alice", "unknown", TTL)
    fresh = await state.allocate("c1", "alice", "unknown", 3.0, None, TTL)
    assert fresh is not None and not fresh.duplicate and not fresh.persisted
    assert fresh.message_id == 2


async def test_confirm_counts_a_message_unread_once_and_only_where_known(
    subject: Subject,
) -> None:
    state = subject.state
    await state.allocate("c1", "alice", "r1", time.time(), 0, TTL)
    await state.set_unread("bob", {"c1": 0})
    await state.confirm("c1", "alice", "r1", TTL, ["bob", "carol", "bob"])
    await state.confirm("c1", "alice", "r1", TTL, ["bob", "carol"])  # a retried send
    assert await state.unread("bob", ["c1"]) == {"c1": 1}
    assert await state.unread("carol", ["c1"]) == {}, "an unknown counter stays unknown"


async def test_allocate_as_member_allocates_only_for_a_cached_member(subject: Subject) -> None:
    state = subject.state
    unknown = await state.allocate_as_member("c1", "alice", "r1", 1.0, TTL)
    assert (unknown.members, unknown.allocation) == (None, None), "members not cached"
    await state.set_members("c1", ["zoe", "alice"])
    lost = await state.allocate_as_member("c1", "alice", "r1", 1.0, TTL)
    assert (lost.members, lost.allocation) == (("zoe", "alice"), None), "sequence unknown"
    await state.ensure_sequence("c1", 7)
    stranger = await state.allocate_as_member("c1", "bob", "r1", 1.0, TTL)
    assert (stranger.members, stranger.allocation) == (("zoe", "alice"), None)
    now = 1_712_345_678.123_456_7
    first = await state.allocate_as_member("c1", "alice", "r1", now, TTL)
    assert first.members == ("zoe", "alice") and first.allocation is not None
    assert (first.allocation.message_id, first.allocation.created_at) == (8, now)
    assert not first.allocation.duplicate and not first.allocation.persisted
    await state.confirm_many([SendConfirmation("c1", "alice", "r1", TTL)])
    again = await state.allocate_as_member("c1", "alice", "r1", now + 5, TTL)
    assert again.allocation is not None
    assert (again.allocation.message_id, again.allocation.created_at) == (8, now)
    assert again.allocation.duplicate and again.allocation.persisted
    assert await allocate_id(state, "r2") == 9, "the stranger took no id"


async def test_confirm_many_confirms_each_send_once(subject: Subject) -> None:
    state = subject.state
    for cid in ("c1", "c2"):
        await state.allocate(cid, "alice", "r1", 1.0, 0, TTL)
        await state.set_unread("bob", {cid: 0})
    await state.allocate("c1", "alice", "r2", 1.0, None, TTL)
    batch = [
        SendConfirmation("c1", "alice", "r1", TTL, ("bob",)),
        SendConfirmation("c1", "alice", "r2", TTL, ("bob", "carol")),
        SendConfirmation("c2", "alice", "r1", TTL, ("bob",)),
        SendConfirmation("c2", "alice", "unknown", TTL, ("bob",)),
    ]
    await state.confirm_many(batch)
    await state.confirm_many(batch[:1])  # a retried send
    await state.confirm_many([])
    assert await state.unread("bob", ["c1", "c2"]) == {"c1": 2, "c2": 1}
    for cid, request in (("c1", "r1"), ("c1", "r2"), ("c2", "r1")):
        confirmed = await state.allocate(cid, "alice", request, 2.0, None, TTL)
        assert confirmed is not None and confirmed.persisted


async def test_after_everything_was_lost_ids_continue_after_the_seed(subject: Subject) -> None:
    state = subject.state
    for i in range(3):
        await allocate_id(state, f"r{i}", seed=0)
    await subject.lose_everything()
    assert await state.allocate("c1", "alice", "r9", 5.0, None, TTL) is None
    assert await state.allocate("c1", "alice", "r9", 5.0, None, TTL) is None
    assert await allocate_id(state, "r9", seed=3) == 4
    assert await allocate_id(state, "r10") == 5


async def test_ensure_sequence_never_moves_back(subject: Subject) -> None:
    state = subject.state
    await state.ensure_sequence("c1", 0)
    assert await allocate_id(state, "r1") == 1
    await state.ensure_sequence("c1", 0)  # a stale view of the newest id
    assert await allocate_id(state, "r2") == 2
    await state.ensure_sequence("c1", 10)  # a sequence lost behind the stored ids
    assert await allocate_id(state, "r3") == 11


async def test_members_are_cached_in_order_and_replaced(subject: Subject) -> None:
    state = subject.state
    assert await state.members("c1") is None
    await state.set_members("c1", ["zoe", "adam", "mia"])
    assert await state.members("c1") == ("zoe", "adam", "mia")
    await state.set_members("c1", ["adam"])
    assert await state.members("c1") == ("adam",)
    await state.set_members("c1", [])
    assert await state.members("c1") == ()
    assert await state.members("c2") is None, "per conversation"


async def test_unread_counters_are_set_read_and_forgotten(subject: Subject) -> None:
    state = subject.state
    await state.set_unread("bob", {"c1": 2, "c2": 0})
    await state.set_unread("carol", {"c2": 5})
    assert await state.unread("bob", ["c1", "c2", "c3"]) == {"c1": 2, "c2": 0}
    assert await state.unread("carol", ["c1", "c2"]) == {"c2": 5}
    assert await state.unread("carol", []) == {}
    await state.set_unread("bob", {"c1": 0})
    await state.set_unread("bob", {})
    assert await state.unread("bob", ["c1"]) == {"c1": 0}
    await state.forget_unread("bob", ["c1", "c9"])
    await state.forget_unread("bob", [])
    assert await state.unread("bob", ["c1", "c2"]) == {"c2": 0}
    assert await state.unread("carol", ["c2"]) == {"c2": 5}, "per user"


async def test_typing_is_set_and_cleared_once(subject: Subject) -> None:
    state = subject.state
    assert not await state.clear_typing("c1", "bob")
    await state.set_typing("c1", "bob", 10.0)
    await state.set_typing("c1", "bob", 10.0)  # renewed
    assert not await state.clear_typing("c1", "carol"), "per user"
    assert not await state.clear_typing("c2", "bob"), "per conversation"
    assert await state.clear_typing("c1", "bob")
    assert not await state.clear_typing("c1", "bob")


CALLS: dict[str, Callable[[ChatState], Awaitable[Any]]] = {
    "allocate": lambda s: s.allocate("c1", "a", "r", 1.0, 0, TTL),
    "allocate_as_member": lambda s: s.allocate_as_member("c1", "a", "r", 1.0, TTL),
    "confirm": lambda s: s.confirm("c1", "a", "r", TTL),
    "confirm_many": lambda s: s.confirm_many([SendConfirmation("c1", "a", "r", TTL)]),
    "ensure_sequence": lambda s: s.ensure_sequence("c1", 3),
    "members": lambda s: s.members("c1"),
    "set_members": lambda s: s.set_members("c1", ["a"]),
    "unread": lambda s: s.unread("a", ["c1"]),
    "set_unread": lambda s: s.set_unread("a", {"c1": 1}),
    "forget_unread": lambda s: s.forget_unread("a", ["c1"]),
    "set_typing": lambda s: s.set_typing("c1", "a", 1.0),
    "clear_typing": lambda s: s.clear_typing("c1", "a"),
}


async def test_an_unreachable_store_is_unavailable_naming_redis(subject: Subject) -> None:
    broken = await subject.unreachable()
    for method, call in CALLS.items():
        with pytest.raises(Unavailable) as caught:
            await call(broken)
        assert caught.value.metadata["backend"] == "Redis", method


def test_the_suite_calls_every_method_of_the_port() -> None:
    methods = {name for name in vars(ChatState) if not name.startswith("_")}
    assert set(CALLS) == methods
