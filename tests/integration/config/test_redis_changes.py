"""Configuration announcements through a real Redis: delivered to every listener, and after
Redis was killed and came back, the listener subscribes again and asks for a full re-read
(what it may have missed)."""

from __future__ import annotations

import asyncio

from procall.config import PropertyKey, Scope
from procall.launch.redis import RedisProcess
from procall.settings import RedisSettings
from procall.storage.redis.client import create_redis
from procall.storage.redis.config import RedisConfigChanges
from tests.helpers.topology import wait_for

RING = PropertyKey(Scope.GLOBAL, "", "calls.ring_seconds")


async def test_announcements_reach_listeners_and_survive_a_redis_restart(
    redis_available: None,
) -> None:
    with RedisProcess() as server:
        settings = RedisSettings(url=server.url, socket_timeout=0.5)
        clients = [create_redis(settings) for _ in range(3)]
        publisher = RedisConfigChanges(clients[0])
        listeners = [RedisConfigChanges(c, retry_seconds=0.2) for c in clients[1:]]
        heard: list[list[PropertyKey | None]] = [[], []]
        for listener, log in zip(listeners, heard, strict=True):

            async def record(key: PropertyKey | None, log: list[PropertyKey | None] = log) -> None:
                log.append(key)

            listener.start(record)
        try:
            # each listener asks for a full re-read once subscribed
            await wait_for(lambda: _now(all(log == [None] for log in heard)), timeout=5)
            await publisher.changed(RING, 3)
            await wait_for(lambda: _now(all(log == [None, RING] for log in heard)), timeout=5)

            server.kill()
            await publisher.changed(RING, 4)  # lost: logged, never raised
            await asyncio.sleep(0.5)
            server.start()
            # subscribed again: a full re-read catches what was missed
            await wait_for(
                lambda: _now(all(log[-1] is None and len(log) == 3 for log in heard)), timeout=10
            )
            await wait_for(lambda: _publish_heard(publisher, heard), timeout=10)
        finally:
            for listener in listeners:
                await listener.stop()
            for client in clients:
                await client.aclose()


async def _publish_heard(
    publisher: RedisConfigChanges, heard: list[list[PropertyKey | None]]
) -> bool:
    await publisher.changed(RING, 5)
    await asyncio.sleep(0.1)
    return all(log[-1] == RING for log in heard)


async def _now(value: bool) -> bool:
    return value
