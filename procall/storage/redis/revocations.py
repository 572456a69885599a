"""Revoked sessions in Redis, shared by every UCServer.

Key layout:

- ``procall:sessions:revoked`` — a sorted set: session id, scored by the Unix
  time until which its tokens must be refused (the longest a token of the
  session can still live). Entries past their time are pruned on every write
  and read, so the set holds only the revocations in force (one sorted set
  rather than a key per session: a server loads them all with one command).
- channel ``procall:sessions:revoked`` — each new revocation is published as
  ``"<session id> <until>"``, so the other servers learn of it at once.

A follower subscribes first and loads the set second, so nothing recorded in
between is missed (seeing one twice is harmless).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.errors import Unavailable

__all__ = ["RedisRevocationStore"]

_KEY = "procall:sessions:revoked"
_CHANNEL = "procall:sessions:revoked"


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisRevocationStore:
    """Records and follows session revocations (``RevocationStore`` port)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def revoke(self, session_id: str, until: float) -> None:
        """Record the revocation and tell every follower."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(_KEY, {session_id: until}, gt=True)
                pipe.zremrangebyscore(_KEY, "-inf", time.time())
                pipe.publish(_CHANNEL, f"{session_id} {until!r}")
                await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None

    async def load(self) -> dict[str, float]:
        """Every revocation in force: session id -> until."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(_KEY, "-inf", time.time())
                pipe.zrange(_KEY, 0, -1, withscores=True)
                _, entries = await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        return {_text(member): float(score) for member, score in entries}

    async def follow(self) -> AsyncIterator[tuple[str, float]]:
        """Every revocation in force, then each new one as it is recorded; ends with
        ``Unavailable`` when Redis fails (follow again once it answers)."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(_CHANNEL)
            except (RedisError, OSError):
                raise Unavailable.backend("Redis") from None
            for item in (await self.load()).items():
                yield item
            while True:
                try:
                    message = await pubsub.get_message(timeout=1.0)
                except (RedisError, OSError):
                    raise Unavailable.backend("Redis") from None
                if message is None or message.get("type") != "message":
                    continue
                session_id, _, until = _text(message["data"]).partition(" ")
                try:
                    entry = (session_id, float(until))
                except ValueError:
                    continue  # not one of ours
                yield entry
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except (RedisError, OSError):
                pass
