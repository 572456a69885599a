"""The behaviour of a ``LeaseStore``, held by the Redis store and by the in-memory fake the
unit tests use (``tests/helpers/leases.py``): one suite, both stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from procall.errors import Unavailable
from procall.launch.redis import free_port
from procall.leases import EditLease, LeaseStore, new_lease_id
from procall.storage.redis.leases import RedisLeaseStore
from tests.helpers.leases import MemoryLeaseStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LeaseStore]:
    if request.param == "memory":
        yield MemoryLeaseStore()
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisLeaseStore(client)
    await client.aclose()


def candidate(resource: str, holder: str, ttl: float = 30.0, server: str = "uc-1") -> EditLease:
    now = time.time()
    return EditLease(new_lease_id(resource), resource, holder, server, now, now + ttl, 0)


async def test_first_comer_gets_the_lease_and_the_second_sees_it(store: LeaseStore) -> None:
    mine = candidate("user/u1", "root")
    got = await store.acquire(mine, 30_000)
    assert got.lease_id == mine.lease_id and got.holder_user_id == "root"
    assert got.fencing == 1 and got.server_id == "uc-1"
    assert got.acquire_time == pytest.approx(mine.acquire_time, abs=0.002)
    theirs = await store.acquire(candidate("user/u1", "admin2", server="uc-2"), 30_000)
    assert theirs == got  # unchanged, still root's
    assert await store.get("user/u1") == got
    assert await store.get("user/u2") is None


async def test_the_holder_acquiring_again_renews_its_lease(store: LeaseStore) -> None:
    first = await store.acquire(candidate("group/g1", "root", ttl=10), 10_000)
    again = await store.acquire(candidate("group/g1", "root", ttl=50), 50_000)
    assert again.lease_id == first.lease_id and again.fencing == first.fencing
    assert again.expire_time > first.expire_time


async def test_a_lapsed_lease_frees_the_resource_with_a_higher_fencing_number(
    store: LeaseStore,
) -> None:
    first = await store.acquire(candidate("config/global/chat.x", "root", ttl=0.15), 150)
    await asyncio.sleep(0.3)
    assert await store.get("config/global/chat.x") is None
    assert await store.renew("config/global/chat.x", first.lease_id, time.time() + 5, 5000) is None
    assert not await store.release("config/global/chat.x", first.lease_id)
    second = await store.acquire(candidate("config/global/chat.x", "admin2"), 30_000)
    assert second.holder_user_id == "admin2" and second.fencing > first.fencing
    assert [lease.lease_id for lease in await store.live()] == [second.lease_id]


async def test_released_leases_are_gone_and_numbers_keep_growing(store: LeaseStore) -> None:
    first = await store.acquire(candidate("user/u1", "root"), 30_000)
    assert not await store.release("user/u1", "someone-else.dXNlci91MQ")
    assert await store.release("user/u1", first.lease_id)
    assert not await store.release("user/u1", first.lease_id)
    assert await store.get("user/u1") is None and await store.live() == []
    second = await store.acquire(candidate("user/u1", "root"), 30_000)
    assert second.fencing == first.fencing + 1 and second.lease_id != first.lease_id


async def test_renew_acts_on_the_named_lease_only(store: LeaseStore) -> None:
    lease = await store.acquire(candidate("user/u1", "root", ttl=0.3), 300)
    assert await store.renew("user/u1", "other.dXNlci91MQ", time.time() + 5, 5000) is None
    renewed = await store.renew("user/u1", lease.lease_id, time.time() + 5, 5000)
    assert renewed is not None and renewed.lease_id == lease.lease_id
    assert renewed.fencing == lease.fencing and renewed.expire_time > lease.expire_time
    await asyncio.sleep(0.45)  # past the first lifetime: the renewal holds it
    assert await store.get("user/u1") == renewed


async def test_live_lists_every_live_lease_once(store: LeaseStore) -> None:
    a = await store.acquire(candidate("user/u1", "root"), 30_000)
    b = await store.acquire(candidate("group/g1", "admin2", server="uc-2"), 30_000)
    await store.acquire(candidate("user/u2", "root", ttl=0.1), 100)
    await store.acquire(candidate("user/u1", "root"), 30_000)  # renewal: no second entry
    await asyncio.sleep(0.25)
    listed = sorted(await store.live(), key=lambda lease: lease.resource)
    assert [x.lease_id for x in listed] == [b.lease_id, a.lease_id]
    assert listed[0].server_id == "uc-2"


async def test_racing_acquisitions_give_exactly_one_holder(store: LeaseStore) -> None:
    tries = [candidate("user/u9", f"admin{i}") for i in range(8)]
    results = await asyncio.gather(*(store.acquire(c, 30_000) for c in tries))
    assert len({r.lease_id for r in results}) == 1
    assert results[0].holder_user_id in {c.holder_user_id for c in tries}


async def test_redis_store_answers_unavailable_without_redis(redis_available: None) -> None:
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    store = RedisLeaseStore(client)
    try:
        for call in (
            store.acquire(candidate("user/u1", "root"), 1000),
            store.renew("user/u1", "x.dXNlci91MQ", time.time(), 1000),
            store.release("user/u1", "x.dXNlci91MQ"),
            store.get("user/u1"),
            store.live(),
        ):
            with pytest.raises(Unavailable) as caught:
                await call
            assert caught.value.metadata["backend"] == "Redis (edit leases)"
    finally:
        await client.aclose()
