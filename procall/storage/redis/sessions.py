"""Who is logged on where, system-wide, in Redis (for admins).

Key layout:

- ``procall:sessions:servers`` — a set of the UCServer ids that have sessions.
- ``procall:sessions:<server_id>`` — a hash: session id -> JSON (user id,
  username, client name, login time, admin flag). It has a TTL that the
  server renews with its heartbeat, so the sessions of a dead server vanish by
  themselves. Sessions are added and removed as they begin and end (those made
  while a write runs go together, in order, in the next transaction); the heartbeat
  only renews the TTL, and rewrites the hash whole only when it is gone (Redis
  restarted, or the TTL ran out) or an add or remove failed (Redis was down): a
  heartbeat costs the same for ten sessions or ten thousand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.admin_views.model import LoggedOnSession
from procall.errors import Unavailable

__all__ = ["RedisSessionRegistry"]

_SERVERS = "procall:sessions:servers"
_PREFIX = "procall:sessions:"


class RedisSessionRegistry:
    """Publishes this server's sessions and lists everyone's (the admin views'
    ``LoggedOnSessions``)."""

    def __init__(self, redis: aioredis.Redis, server_id: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._server_id = server_id
        self._key = _PREFIX + server_id
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        #: Whether the hash may differ from this server's sessions (an update failed).
        self._stale = False
        #: Adds and removes waiting for the next write, in order.
        self._changes: list[tuple[LoggedOnSession | str, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, entry: LoggedOnSession) -> None:
        """A session began here."""
        await self._submit(entry)

    async def remove(self, session_id: str) -> None:
        """A session ended here."""
        await self._submit(session_id)

    async def _submit(self, change: LoggedOnSession | str) -> None:
        """Write an add (an entry) or a remove (a session id), in order with the others:
        changes made while a write runs go together in the next one (a restarted server's
        returning clients open their sessions by the thousand)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._changes.append((change, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="session-registry")
        await future

    async def _write(self) -> None:
        while self._changes:
            batch, self._changes = self._changes, []
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    added = False
                    for change, _ in batch:
                        if isinstance(change, str):
                            pipe.hdel(self._key, change)
                        else:
                            pipe.hset(self._key, change.session_id, json.dumps(asdict(change)))
                            added = True
                    if added:
                        pipe.pexpire(self._key, self._ttl_ms)
                        pipe.sadd(_SERVERS, self._server_id)
                    await pipe.execute()
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except (RedisError, OSError):
                self._stale = True
                for _, future in batch:
                    if not future.done():
                        future.set_exception(Unavailable.backend("Redis"))
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def heartbeat(self, entries: Callable[[], Iterable[LoggedOnSession]], count: int) -> None:
        """Renew this server's TTL; rewrite its sessions whole (``entries()``) only when the
        hash is gone although ``count`` sessions live here, or an update had failed."""
        if not self._stale:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.pexpire(self._key, self._ttl_ms)
                    pipe.sadd(_SERVERS, self._server_id)
                    renewed, _ = await pipe.execute()
            except (RedisError, OSError):
                self._stale = True
                raise Unavailable.backend("Redis") from None
            if renewed or not count:
                return
        await self.publish(entries())

    async def publish(self, entries: Iterable[LoggedOnSession]) -> None:
        """Rewrite this server's sessions whole and renew their TTL (heartbeat)."""
        mapping: dict[str | bytes, str | bytes] = {
            e.session_id: json.dumps(asdict(e)) for e in entries
        }
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key)
                if mapping:
                    pipe.hset(self._key, mapping=mapping)  # type: ignore[arg-type]
                    pipe.pexpire(self._key, self._ttl_ms)
                    pipe.sadd(_SERVERS, self._server_id)
                await pipe.execute()
        except (RedisError, OSError):
            self._stale = True
            raise Unavailable.backend("Redis") from None
        self._stale = False

    async def list_all(self) -> list[LoggedOnSession]:
        """Every session of every live UCServer, by server then login time."""
        try:
            servers = sorted(
                s.decode() if isinstance(s, bytes) else str(s)
                for s in await self._redis.smembers(_SERVERS)
            )
            async with self._redis.pipeline(transaction=False) as pipe:
                for server in servers:
                    pipe.hvals(_PREFIX + server)
                results = await pipe.execute()
            gone = [s for s, values in zip(servers, results, strict=True) if not values]
            if gone:
                await self._redis.srem(_SERVERS, *gone)
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        found = [LoggedOnSession(**json.loads(v)) for values in results for v in values]
        return sorted(found, key=lambda e: (e.server_id, e.login_time, e.session_id))
