"""Start-up check and shutdown of a role's Redis client."""

from __future__ import annotations

import redis.asyncio as aioredis

from procall.servers.runtime.app import StartupError
from procall.settings import Settings
from procall.storage.redis import RedisUnavailableError, check_redis, create_redis

__all__ = ["connect_redis"]


async def connect_redis(settings: Settings) -> aioredis.Redis:
    """A Redis client that has answered PING, or ``StartupError`` naming where Redis is."""
    client = create_redis(settings.redis)
    try:
        await check_redis(client, settings.redis)
    except RedisUnavailableError as exc:
        await client.aclose()
        raise StartupError(str(exc)) from None
    return client
