"""The stores of a Lookup server, built from its settings in one place.

The Lookup's whole routing view lives in Redis; its composition root asks this factory
for the stores and never holds the Redis client itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from procall.settings import Settings
from procall.storage.redis.client import RedisUnavailableError, check_redis, create_redis
from procall.storage.redis.registry import (
    RedisHomeStore,
    RedisMediaAllocations,
    RedisServerRegistry,
)

__all__ = ["LookupStores", "open_lookup_stores"]


@dataclass(frozen=True)
class LookupStores:
    """The routing view's stores, sharing one Redis client."""

    servers: RedisServerRegistry
    media: RedisMediaAllocations
    homes: RedisHomeStore
    _redis: aioredis.Redis

    async def close(self) -> None:
        """Close the Redis client."""
        await self._redis.aclose()


async def open_lookup_stores(settings: Settings, check_interval: float) -> LookupStores:
    """The Lookup's stores, once Redis has answered PING (``RedisUnavailableError``
    naming where Redis was expected when it does not); ``check_interval`` is how often
    the registry looks for lapsed registrations."""
    redis = create_redis(settings.redis)
    try:
        await check_redis(redis, settings.redis)
    except RedisUnavailableError:
        await redis.aclose()
        raise
    lookup = settings.lookup
    # bounds one Redis operation as a whole (Sentinel discovery included)
    op_timeout = 3 * settings.redis.socket_timeout
    return LookupStores(
        servers=RedisServerRegistry(redis, op_timeout=op_timeout, check_interval=check_interval),
        media=RedisMediaAllocations(
            redis, allocation_ttl=lookup.allocation_ttl, op_timeout=op_timeout
        ),
        homes=RedisHomeStore(redis, op_timeout=op_timeout),
        _redis=redis,
    )
