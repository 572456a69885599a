"""The Redis presence store bumps a user's version only for a change a watcher can see, so
that a second client of a user, or a presence set to what it is, is never announced twice."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from procall.presence.model import Availability, Capabilities, PresenceChange
from procall.storage.redis.presence import RedisPresenceStore


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)  # flushed by ``redis_url``
    yield client
    await client.aclose()


async def test_only_visible_changes_get_a_new_version(redis: aioredis.Redis) -> None:
    store = RedisPresenceStore(redis)
    chat = Capabilities(chat=True)
    first = await store.update("u1", PresenceChange(session_capabilities=("s1", chat)), "", "uc-1")
    assert first.availability is Availability.AVAILABLE and first.version > 0

    # a second client with the same capabilities comes and goes: nothing to tell
    second = await store.update("u1", PresenceChange(session_capabilities=("s2", chat)), "", "uc-1")
    assert second.version == first.version
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
