"""``RedisSessionRegistry`` in a real Redis: who is logged on where, as admins see it (the
admin views' ``LoggedOnSessions`` port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from procall.admin_views import LoggedOnSession as LoggedOn
from procall.errors import Unavailable
from procall.launch.redis import RedisProcess, free_port
from procall.storage.redis.sessions import RedisSessionRegistry


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def entry(session_id: str, user: str, server: str, at: float, admin: bool = False) -> LoggedOn:
    return LoggedOn(session_id, f"u-{user}", user, server, "cli", at, admin)


async def test_sessions_of_every_server_are_listed_by_server_then_login_time(
    redis: aioredis.Redis,
) -> None:
    uc1 = RedisSessionRegistry(redis, "uc-1", 30.0)
    uc2 = RedisSessionRegistry(redis, "uc-2", 30.0)
    assert await uc1.list_all() == []
    await uc2.add(entry("s3", "carol", "uc-2", 5.0))
    await uc1.add(entry("s2", "bob", "uc-1", 9.0, admin=True))
    await uc1.add(entry("s1", "alice", "uc-1", 7.0))
    listed = await uc2.list_all()
    assert [(e.server_id, e.session_id) for e in listed] == [
        ("uc-1", "s1"),
        ("uc-1", "s2"),
        ("uc-2", "s3"),
    ]
    assert listed[1] == entry("s2", "bob", "uc-1", 9.0, admin=True), "every field kept"
    await uc1.remove("s1")
    await uc1.remove("never")
    assert [e.session_id for e in await uc1.list_all()] == ["s2", "s3"]


async def test_a_dead_servers_sessions_vanish_with_its_ttl(redis: aioredis.Redis) -> None:
    dying = RedisSessionRegistry(redis, "uc-1", 0.2)
    alive = RedisSessionRegistry(redis, "uc-2", 30.0)
    await dying.add(entry("s1", "alice", "uc-1", 1.0))
    await alive.add(entry("s2", "bob", "uc-2", 2.0))
    await asyncio.sleep(0.35)
    assert [e.session_id for e in await alive.list_all()] == ["s2"]
    members = await redis.smembers("procall:sessions:servers")
    assert members == {b"uc-2"}, "the dead server is dropped from the index"


async def test_a_heartbeat_renews_and_rewrites_what_redis_lost(redis: aioredis.Redis) -> None:
    registry = RedisSessionRegistry(redis, "uc-1", 0.4)
    mine = [entry("s1", "alice", "uc-1", 1.0), entry("s2", "bob", "uc-1", 2.0)]
    rewrites = 0

    def entries() -> list[LoggedOn]:
        nonlocal rewrites
        rewrites += 1
        return mine

    for each in mine:
        await registry.add(each)
    for _ in range(3):  # renewals outlive the TTL, and cost no rewrite
        await asyncio.sleep(0.2)
        await registry.heartbeat(entries, len(mine))
    assert rewrites == 0 and len(await registry.list_all()) == 2
    await redis.flushall()  # Redis restarted empty
    await registry.heartbeat(entries, len(mine))
    assert rewrites == 1
    assert [e.session_id for e in await registry.list_all()] == ["s1", "s2"]
    await redis.flushall()
    await registry.heartbeat(entries, 0)  # no sessions here: nothing to write back
    assert rewrites == 1 and await registry.list_all() == []


async def test_after_a_failed_update_the_next_heartbeat_rewrites_the_sessions(
    redis_available: None,
) -> None:
    port = free_port()
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    registry = RedisSessionRegistry(client, "uc-1", 30.0)
    try:
        with pytest.raises(Unavailable) as caught:  # Redis is not there (yet)
            await registry.add(entry("s1", "alice", "uc-1", 1.0))
        assert caught.value.metadata["backend"] == "Redis"
        for call in (registry.remove("s1"), registry.list_all(), registry.heartbeat(list, 1)):
            with pytest.raises(Unavailable):
                await call
        with RedisProcess(port):  # Redis answers: the hash is rewritten whole
            await registry.heartbeat(lambda: [entry("s1", "alice", "uc-1", 1.0)], 1)
            assert [e.session_id for e in await registry.list_all()] == ["s1"]
    finally:
        await client.aclose()


async def test_a_removal_that_failed_is_repaired_by_the_next_heartbeat(
    redis: aioredis.Redis,
) -> None:
    registry = RedisSessionRegistry(redis, "uc-1", 30.0)
    await registry.add(entry("s0", "zoe", "uc-1", 0.5))
    await registry.add(entry("s1", "alice", "uc-1", 1.0))
    # Redis refuses writes (as without enough replicas): the removal never happens
    await redis.config_set("min-replicas-to-write", 1)
    try:
        with pytest.raises(Unavailable):
            await registry.remove("s1")
    finally:
        await redis.config_set("min-replicas-to-write", 0)
    assert len(await registry.list_all()) == 2
    await registry.heartbeat(lambda: [entry("s0", "zoe", "uc-1", 0.5)], 1)
    assert [e.session_id for e in await registry.list_all()] == ["s0"]


async def test_adds_and_removes_made_together_land_in_order(redis: aioredis.Redis) -> None:
    registry = RedisSessionRegistry(redis, "uc-1", 30.0)
    changes = [registry.add(entry(f"s{n}", f"user{n}", "uc-1", float(n))) for n in range(50)]
    # a session that ends while its add still waits for the write is gone afterwards
    changes.insert(10, registry.remove("s3"))
    changes.append(registry.remove("s7"))
    changes.append(registry.add(entry("s7", "user7", "uc-1", 7.5)))
    await asyncio.gather(*changes)
    listed = {e.session_id: e for e in await registry.list_all()}
    assert "s3" not in listed and listed["s7"].login_time == 7.5
    assert len(listed) == 49
