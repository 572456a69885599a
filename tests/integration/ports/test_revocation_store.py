"""One behaviour suite for the ``RevocationStore`` port, run against the in-memory fake of the
session unit tests and against ``RedisRevocationStore`` in a real Redis (two stores on one
Redis stand for two UCServers): the direct tests of the Redis store, and the check that the
fake does not drift."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from procall.errors import Unavailable
from procall.launch.redis import free_port
from procall.session.revocations import RevocationStore
from procall.storage.redis.revocations import RedisRevocationStore
from tests.unit.session.fakes import MemoryRevocationStore

WAIT = 5.0


@dataclass
class Subject:
    """Two servers' views of one shared revocation store, and an unreachable one."""

    here: RevocationStore
    there: RevocationStore
    unreachable: Callable[[], RevocationStore]


@pytest.fixture(params=["memory", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "memory":
        shared = MemoryRevocationStore()

        def down() -> RevocationStore:
            broken = MemoryRevocationStore()
            broken.down = True
            return broken

        yield Subject(shared, shared, down)
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    dead = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    try:
        yield Subject(
            RedisRevocationStore(client),
            RedisRevocationStore(client),
            lambda: RedisRevocationStore(dead),
        )
    finally:
        await client.aclose()
        await dead.aclose()


async def _next(feed: AsyncIterator[tuple[str, float]]) -> tuple[str, float]:
    return await asyncio.wait_for(anext(feed), WAIT)


async def test_a_follower_gets_the_revocations_in_force_then_each_new_one(
    subject: Subject,
) -> None:
    later = time.time() + 600
    await subject.here.revoke("s1", later)
    await subject.here.revoke("gone", time.time() - 1)  # its tokens expired already
    feed = subject.there.follow()
    try:
        assert await _next(feed) == ("s1", later), "in force: loaded first, expired ones not"
        await subject.here.revoke("s2", later + 1)
        assert await _next(feed) == ("s2", later + 1), "a new one: at once"
    finally:
        await feed.aclose()  # type: ignore[attr-defined]


async def test_the_longest_revocation_of_a_session_wins(subject: Subject) -> None:
    later = time.time() + 600
    await subject.here.revoke("s1", later)
    await subject.there.revoke("s1", later - 100)
    feed = subject.here.follow()
    try:
        assert await _next(feed) == ("s1", later)
    finally:
        await feed.aclose()  # type: ignore[attr-defined]


async def test_an_unreachable_store_is_unavailable_naming_redis(subject: Subject) -> None:
    broken = subject.unreachable()
    with pytest.raises(Unavailable) as caught:
        await broken.revoke("s1", time.time() + 60)
    assert caught.value.metadata["backend"] == "Redis"
    with pytest.raises(Unavailable) as caught:
        await _next(broken.follow())
    assert caught.value.metadata["backend"] == "Redis"
