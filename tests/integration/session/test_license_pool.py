"""The license pool in a real Redis: atomic across servers, reclaimed when a server dies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from procall.storage.redis.licenses import LicensePool


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_logins_beyond_the_pool_are_refused_and_logout_frees(redis: aioredis.Redis) -> None:
    pool = LicensePool(redis, "uc-1", ttl_seconds=30)
    await pool.set_total(2)
    assert await pool.take("s1") and await pool.take("s2")
    assert await pool.take("s1"), "taking again for the same session is idempotent"
    assert not await pool.take("s3")
    await pool.give_back("s1")
    assert await pool.take("s3")
    usage = await pool.usage()
    assert (usage.total, usage.in_use, usage.by_server) == (2, 2, {"uc-1": 2})


async def test_two_servers_racing_for_the_last_licenses_never_exceed_the_pool(
    redis: aioredis.Redis,
) -> None:
    one, two = LicensePool(redis, "uc-1", 30), LicensePool(redis, "uc-2", 30)
    await one.set_total(50)
    results = await asyncio.gather(
        *(one.take(f"a{i}") for i in range(40)), *(two.take(f"b{i}") for i in range(40))
    )
    assert sum(results) == 50
    assert (await one.usage()).in_use == 50


async def test_licenses_of_a_dead_server_return_after_its_ttl(redis: aioredis.Redis) -> None:
    dying, alive = LicensePool(redis, "uc-1", ttl_seconds=0.3), LicensePool(redis, "uc-2", 30)
    await alive.set_total(1)
    assert await dying.take("s1")
    assert not await alive.take("s2")
    await asyncio.sleep(0.5)  # uc-1 stopped renewing: its heartbeat TTL lapsed
    assert await alive.take("s2")
    assert (await alive.usage()).by_server == {"uc-2": 1}


async def test_renew_restores_holdings_after_redis_lost_them(redis: aioredis.Redis) -> None:
    pool = LicensePool(redis, "uc-1", 30)
    await pool.set_total(5)
    await pool.take("s1")
    await redis.flushall()  # Redis restarted empty
    await pool.set_total(5)
    await pool.renew(["s1", "s2"])
    assert (await pool.usage()).by_server == {"uc-1": 2}


async def test_renew_restores_holdings_after_the_servers_ttl_lapsed(redis: aioredis.Redis) -> None:
    pool = LicensePool(redis, "uc-1", ttl_seconds=0.3)
    await pool.set_total(5)
    await pool.take("s1")
    await pool.renew(["s1"])
    await pool.renew(["s1"])  # nothing lost: only the TTL is renewed
    assert (await pool.usage()).by_server == {"uc-1": 1}
    await asyncio.sleep(0.5)  # the server stalled past its TTL: its holdings lapsed
    assert (await pool.usage()).by_server == {}
    await pool.renew(["s1", "s2"])
    assert (await pool.usage()).by_server == {"uc-1": 2}
