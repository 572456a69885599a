"""Progress of background move operations (rebalance, drain) in Redis, so that an
administrator reads it on any UCServer, not only on the one running the operation.

Key layout: ``procall:moves:op:<operation id>`` — a JSON object of the operation's
fields, rewritten as it progresses, expiring ``ttl`` seconds after its last write.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.errors import Unavailable

__all__ = ["RedisMoveOperations"]

_PREFIX = "procall:moves:op:"


class RedisMoveOperations:
    """Saves and reads move operations' progress records."""

    def __init__(self, redis: aioredis.Redis, ttl: float = 3600.0) -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl * 1000))

    async def save(self, operation_id: str, record: dict[str, Any]) -> None:
        """Write the operation's current progress."""
        try:
            await self._redis.set(
                _PREFIX + operation_id, json.dumps(record, sort_keys=True), px=self._ttl_ms
            )
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None

    async def load(self, operation_id: str) -> dict[str, Any] | None:
        """The operation's last saved progress, or None when unknown (or expired)."""
        try:
            raw = await self._redis.get(_PREFIX + operation_id)
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        return record
