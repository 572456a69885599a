"""WatchTopology: two Lookups on one Redis, each watcher sees each change exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from tests.integration.lookup.conftest import TTL, Stub, beat, eventually, server

JOINED = lookup_pb2.TOPOLOGY_CHANGE_KIND_JOINED
UPDATED = lookup_pb2.TOPOLOGY_CHANGE_KIND_UPDATED
LEFT = lookup_pb2.TOPOLOGY_CHANGE_KIND_LEFT

Seen = list[tuple[int, str, int, int, float]]  # kind, server id, epoch, load, arrival


class Watcher:
    """Collects the changes of one WatchTopology stream in the background."""

    def __init__(self, stub: Stub, role: int = 0) -> None:
        self.seen: Seen = []
        self.error: grpc.aio.AioRpcError | None = None
        self._call = stub.WatchTopology(lookup_pb.WatchTopologyRequest(role=role))
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            async for reply in self._call:
                c = reply.change
                self.seen.append(
                    (c.kind, c.server.server_id, c.server.epoch, c.server.load, time.monotonic())
                )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = err

    def changes(self) -> list[tuple[int, str, int, int]]:
        return [item[:4] for item in self.seen]

    async def close(self) -> None:
        self._call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def two_lookups(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> tuple[Stub, Stub]:
    apps = [await start_app("lookup", lookup_settings()) for _ in range(2)]
    return channels(apps[0].address), channels(apps[1].address)


@contextlib.asynccontextmanager
async def keep_beating(
    stub: Stub, beating: dict[str, lookup_pb2.ServerInfo]
) -> AsyncIterator[asyncio.Lock]:
    """Heartbeats every 0.2 s for the servers in ``beating``; hold the lock to edit it."""
    lock = asyncio.Lock()

    async def loop() -> None:
        while True:
            async with lock:
                for info in list(beating.values()):
                    await beat(stub, info)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(loop())
    try:
        yield lock
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_each_watcher_sees_each_change_exactly_once(two_lookups: tuple[Stub, Stub]) -> None:
    one, two = two_lookups
    uc1 = server("uc-1", load=1)
    uc1.epoch = first = await beat(one, uc1)
    beating = {"uc-1": uc1}
    async with keep_beating(one, beating) as lock:
        watchers = [Watcher(one), Watcher(two), Watcher(two)]
        media_watchers = [Watcher(one, lookup_pb2.ROLE_MEDIA), Watcher(two, lookup_pb2.ROLE_MEDIA)]
        everyone = watchers + media_watchers
        try:
            await eventually(lambda: _all(watchers, 1))

            media = server("media-1", lookup_pb2.ROLE_MEDIA)
            media_epoch = await beat(one, media)
            await eventually(lambda: _all(watchers, 2))

            async with lock:
                uc1 = server("uc-1", epoch=first, load=5)
                beating["uc-1"] = uc1
                await beat(two, uc1)  # UPDATED: the load changed
                await beat(one, uc1)  # a plain renewal: nothing to report
            await eventually(lambda: _all(watchers, 3))

            await one.Deregister(
                lookup_pb.DeregisterRequest(server_id="media-1", epoch=media_epoch), timeout=5
            )
            uc2_epoch = await beat(two, server("uc-2"))
            silent_since = time.monotonic()
            await eventually(lambda: _all(watchers, 6), timeout=4 * TTL)
            left_at = [w.seen[5][4] for w in watchers]
            assert max(left_at) - silent_since < TTL + 1.0  # expiry noticed within about the TTL

            async with lock:
                uc1 = server("uc-1", load=5)  # the server restarts: a new epoch
                uc1.epoch = second = await beat(two, uc1)
                beating["uc-1"] = uc1
            await eventually(lambda: _all(watchers, 7))
            await asyncio.sleep(2 * TTL)  # room for any duplicate from the sweeps of both Lookups
        finally:
            for w in everyone:
                await w.close()

    expected = [
        (JOINED, "uc-1", first, 1),
        (JOINED, "media-1", media_epoch, 0),
        (UPDATED, "uc-1", first, 5),
        (LEFT, "media-1", media_epoch, 0),
        (JOINED, "uc-2", uc2_epoch, 0),
        (LEFT, "uc-2", uc2_epoch, 0),
        (UPDATED, "uc-1", second, 5),
    ]
    for w in watchers:
        assert w.error is None
        assert w.changes() == expected
    for w in media_watchers:
        assert w.error is None
        assert w.changes() == [expected[1], expected[3]]


async def _all(watchers: list[Watcher], count: int) -> bool:
    return all(len(w.seen) >= count for w in watchers)


async def test_a_server_that_expired_and_returns_is_reported_left_then_joined(
    lookup: Stub,
) -> None:
    watcher = Watcher(lookup)
    try:
        await eventually(lambda: _all([watcher], 0))
        epoch = await beat(lookup, server("uc-1"))
        await eventually(lambda: _all([watcher], 1))
        await eventually(lambda: _all([watcher], 2), timeout=4 * TTL)  # expired: LEFT
        assert await beat(lookup, server("uc-1", epoch=epoch)) == epoch  # the same run returns
        await eventually(lambda: _all([watcher], 3))
    finally:
        await watcher.close()
    assert watcher.changes() == [
        (JOINED, "uc-1", epoch, 0),
        (LEFT, "uc-1", epoch, 0),
        (JOINED, "uc-1", epoch, 0),
    ]


async def test_a_lost_notification_is_recovered_from_the_change_counter(
    lookup: Stub, redis_url: str
) -> None:
    import redis.asyncio as aioredis

    epoch = await beat(lookup, server("uc-1"))
    watcher = Watcher(lookup)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await eventually(lambda: _all([watcher], 1))
        # uc-1 leaves and its LEFT never reaches the subscriber (as on a dropped connection)
        await client.delete("procall:lookup:server:uc-1")
        await client.zrem("procall:lookup:servers", "uc-1")
        await client.incr("procall:lookup:seq")
        took = await eventually(lambda: _all([watcher], 2), timeout=4 * TTL)
        assert took < 3 * TTL  # two checks of the counter, a quarter TTL apart
        await asyncio.sleep(TTL)
    finally:
        await client.aclose()
        await watcher.close()
    assert watcher.changes() == [(JOINED, "uc-1", epoch, 0), (LEFT, "uc-1", epoch, 0)]
