"""What only the Redis chat state has: TTLs, key layout, cluster slots, concurrent clients,
a killed server. The behaviour every ``ChatState`` shares (ids, idempotency, members, unread,
typing) is one suite run against Redis and the fake: tests/integration/ports/test_chat_state.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from procall.errors import Unavailable
from procall.launch.redis import RedisProcess, free_port
from procall.storage.redis.chat import RedisChatState

TTL = 60.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def state(redis: aioredis.Redis) -> RedisChatState:
    return RedisChatState(redis)


async def chat_keys(redis: aioredis.Redis, pattern: str = "procall:chat:*") -> list[str]:
    return [k.decode() if isinstance(k, bytes) else k for k in await redis.keys(pattern)]


async def allocate_id(
    state: RedisChatState, request_id: str, seed: int | None = None, cid: str = "c1"
) -> int:
    allocation = await state.allocate(cid, "alice", request_id, time.time(), seed, TTL)
    assert allocation is not None and not allocation.duplicate
    return allocation.message_id


async def test_the_sequence_has_no_ttl(state: RedisChatState, redis: aioredis.Redis) -> None:
    await allocate_id(state, "r1", seed=0)
    seq = [k for k in await chat_keys(redis) if k.endswith(":seq")]
    assert len(seq) == 1 and await redis.pttl(seq[0]) == -1


async def test_concurrent_allocations_are_distinct_and_consecutive(redis_url: str) -> None:
    # More tasks than connections: a blocking pool queues them (the default pool would
    # refuse the 101st concurrent command with MaxConnectionsError).
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=20)
    client = aioredis.Redis(connection_pool=pool)
    servers = [RedisChatState(client), RedisChatState(client)]
    try:
        await allocate_id(servers[0], "seed", seed=100)
        ids = await asyncio.gather(*(allocate_id(servers[i % 2], f"r{i}") for i in range(300)))
    finally:
        await client.aclose()
        await pool.aclose()
    assert sorted(ids) == list(range(102, 402))


async def test_concurrent_first_senders_after_a_restart_share_one_sequence(
    state: RedisChatState,
) -> None:
    # Several servers found the sequence missing and seeded it from SQL at once.
    ids = await asyncio.gather(*(allocate_id(state, f"r{i}", seed=7) for i in range(50)))
    assert sorted(ids) == list(range(8, 58))


async def test_confirm_marks_the_request_persisted_and_keeps_its_ttl(
    state: RedisChatState, redis: aioredis.Redis
) -> None:
    await state.allocate("c1", "alice", "req", 1.0, 0, 30.0)
    (key,) = await redis.keys("procall:chat:*:req:*")
    await state.confirm("c1", "alice", "req", 3600.0)
    again = await state.allocate("c1", "alice", "req", 2.0, None, 30.0)
    assert again is not None and again.duplicate and again.persisted
    assert 0 < await redis.pttl(key) <= 30_000
    await state.confirm("c1", "alice", "unknown", 30.0)
    assert await redis.keys("procall:chat:*:req:*") == [key], "confirm creates nothing"


async def test_requests_are_forgotten_after_their_ttl(
    state: RedisChatState, redis: aioredis.Redis
) -> None:
    first = await state.allocate("c1", "alice", "req", 1.0, 0, 0.3)
    (key,) = await redis.keys("procall:chat:*:req:*")
    assert 0 < await redis.pttl(key) <= 300
    await asyncio.sleep(0.45)
    later = await state.allocate("c1", "alice", "req", 2.0, None, 0.3)
    assert first is not None and later is not None
    assert (later.message_id, later.duplicate) == (first.message_id + 1, False)


async def test_the_keys_of_a_conversation_share_one_cluster_slot(
    state: RedisChatState, redis: aioredis.Redis
) -> None:
    await state.allocate("conv-7", "alice", "r1", 1.0, 0, TTL)
    await state.set_members("conv-7", ["alice", "bob"])
    await state.set_unread("bob", {"conv-7": 0})
    await state.set_typing("conv-7", "bob", 10)
    keys = await chat_keys(redis)
    assert len(keys) == 5
    assert len({key_slot(k.encode()) for k in keys}) == 1


async def test_members_expire(redis: aioredis.Redis) -> None:
    state = RedisChatState(redis, members_ttl=0.2)
    await state.set_members("c1", ["a"])
    await asyncio.sleep(0.35)
    assert await state.members("c1") is None


async def test_add_unread_only_increments_known_counters(state: RedisChatState) -> None:
    await state.set_unread("bob", {"c1": 2, "c2": 0})
    await state.set_unread("carol", {"c2": 5})
    await state.add_unread("c1", ["bob", "carol", "bob"])
    await state.add_unread("c1", ["bob", "carol"])
    await state.add_unread("c2", [])
    assert await state.unread("bob", ["c1", "c2", "c3"]) == {"c1": 4, "c2": 0}
    assert await state.unread("carol", ["c1", "c2"]) == {"c2": 5}, "c1 stays unknown"
    assert await state.unread("carol", []) == {}
    await state.set_unread("bob", {"c1": 0})
    assert await state.unread("bob", ["c1"]) == {"c1": 0}


async def test_typing_expires_and_clears(state: RedisChatState) -> None:
    await state.set_typing("c1", "bob", 0.2)
    assert await state.clear_typing("c1", "bob")
    assert not await state.clear_typing("c1", "bob")
    await state.set_typing("c1", "bob", 0.2)
    await asyncio.sleep(0.35)
    assert not await state.clear_typing("c1", "bob"), "the indication expired"


CALLS: dict[str, Callable[[RedisChatState], Awaitable[Any]]] = {
    "allocate": lambda s: s.allocate("c1", "a", "r", 1.0, 0, TTL),
    "confirm": lambda s: s.confirm("c1", "a", "r", TTL),
    "members": lambda s: s.members("c1"),
    "set_members": lambda s: s.set_members("c1", ["a"]),
    "add_unread": lambda s: s.add_unread("c1", ["a"]),
    "unread": lambda s: s.unread("a", ["c1"]),
    "set_unread": lambda s: s.set_unread("a", {"c1": 1}),
    "set_typing": lambda s: s.set_typing("c1", "a", 1.0),
    "clear_typing": lambda s: s.clear_typing("c1", "a"),
    "ensure_sequence": lambda s: s.ensure_sequence("c1", 3),
}


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_an_unreachable_redis_is_unavailable_naming_redis(method: str) -> None:
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    try:
        with pytest.raises(Unavailable) as caught:
            await CALLS[method](RedisChatState(client))
    finally:
        await client.aclose()
    assert caught.value.metadata["backend"] == "Redis"


async def test_a_killed_redis_is_unavailable_naming_redis(redis_available: None) -> None:
    with RedisProcess() as server:
        client = aioredis.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        state = RedisChatState(client)
        try:
            assert await allocate_id(state, "r1", seed=0) == 1
            server.kill()
            for method in sorted(CALLS):
                with pytest.raises(Unavailable) as caught:
                    await CALLS[method](state)
                assert caught.value.metadata["backend"] == "Redis", method
        finally:
            await client.aclose()
