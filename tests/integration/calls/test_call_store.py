"""The Redis call store: create once per request, compare-and-set, indexes, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from procall.calls.model import Call, CallState, EndReason
from procall.storage.redis.calls import RedisCallStore


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisCallStore]:
    client = aioredis.Redis.from_url(redis_url)
    yield RedisCallStore(client)
    await client.aclose()


def _call(call_id: str = "c1", request_id: str = "r1") -> Call:
    return Call(
        call_id, "alice", "bob", "bob", CallState.RINGING, create_time=1.0, request_id=request_id
    )


async def test_a_request_creates_one_call(store: RedisCallStore) -> None:
    first = await store.create(_call("c1"), ttl=60, request_ttl=60)
    again = await store.create(_call("c2"), ttl=60, request_ttl=60)
    assert first.call_id == again.call_id == "c1"
    assert await store.get("c2") is None
    assert await store.by_request("alice", "r1") == first
    assert [c.call_id for c in await store.active_of("bob")] == ["c1"]


async def test_of_two_changes_over_one_version_exactly_one_is_stored(
    store: RedisCallStore,
) -> None:
    call = await store.create(_call(), ttl=60, request_ttl=60)
    answers = [
        call.changed(state=CallState.CONNECTED, answered_by="bob", answered_session=s)
        for s in ("s1", "s2", "s3")
    ]
    stored = await asyncio.gather(*(store.replace(a, ttl=60) for a in answers))
    assert sorted(stored) == [False, False, True]
    winner = answers[stored.index(True)]
    assert await store.get(call.call_id) == winner


async def test_an_ended_call_leaves_the_indexes(store: RedisCallStore) -> None:
    call = await store.create(_call(), ttl=60, request_ttl=60)
    ended = call.changed(state=CallState.ENDED, end_reason=EndReason.CANCELED, end_time=2.0)
    assert await store.replace(ended, ttl=60)
    assert await store.active_of("alice") == [] and await store.active_of("bob") == []
    assert (await store.get(call.call_id)) == ended


async def test_calls_expire_unless_refreshed(store: RedisCallStore) -> None:
    kept = await store.create(_call("kept", "r1"), ttl=0.3, request_ttl=60)
    await store.create(
        Call("gone", "carol", "dave", "dave", CallState.RINGING, create_time=1.0),
        ttl=0.3,
        request_ttl=60,
    )
    for _ in range(4):
        await asyncio.sleep(0.15)
        await store.refresh([kept], ttl=0.3)
    assert await store.get("gone") is None and await store.active_of("dave") == []
    assert [c.call_id for c in await store.active_of("bob")] == ["kept"]


async def test_the_trace_a_call_began_is_stored_with_it(store: RedisCallStore) -> None:
    traced = Call(
        "c1", "alice", "bob", "bob", CallState.RINGING, create_time=1.0, request_id="r1",
        trace_context=(("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),),
    )  # fmt: skip
    await store.create(traced, ttl=60, request_ttl=60)
    assert await store.get("c1") == traced
