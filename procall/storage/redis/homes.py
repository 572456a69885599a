"""The user -> home UCServer map in Redis (keys: see ``procall.storage.redis.registry``).

Whoever assigns home servers (the Directory on ``SetHomeServer``, an admin moving
users) writes the assignment here with ``set_home`` and removes it with
``clear_home``; the Lookup reads it for ``ResolveHome``. On a miss the Lookup
asks the Directory and keeps its answer with ``cache_home`` for a while; a cached
answer never replaces an assignment written with ``set_home``. Usernames are
matched case-insensitively (``str.casefold``), as the Directory does.

Example::

    homes = RedisHomeStore(redis_client)
    await homes.set_home("u-42", "alice", "ucserver-1")
    await homes.find_home(username="Alice")   # HomeAssignment(user_id="u-42", ...)
    await homes.clear_home("u-42")
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from procall.routing.models import HomeAssignment
from procall.storage.redis import _lookup_scripts as scripts
from procall.storage.redis._lookup_common import LookupKeys, RedisCalls, text

__all__ = ["RedisHomeStore"]


class RedisHomeStore:
    """Home-server records by user id and by username (``procall.routing.ports.HomeStore``)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keys: LookupKeys | None = None,
        op_timeout: float | None = None,
    ) -> None:
        self._calls = RedisCalls(client, op_timeout)
        self._keys = keys or LookupKeys()
        self._set = self._calls.script(scripts.SET_HOME)
        self._clear = self._calls.script(scripts.CLEAR_HOME)

    async def set_home(self, user_id: str, username: str, server_id: str) -> None:
        """Assign ``server_id`` as the user's home (no TTL; replaces any earlier record,
        and the record under a previous username of the same user)."""
        await self._write(HomeAssignment(user_id, username, server_id), ttl=0.0, cached=False)

    async def clear_home(self, user_id: str) -> bool:
        """Remove the user's record (by id and username); whether there was one."""
        reply = await self._calls.run(
            self._clear, [self._keys.home_by_id(user_id)], [self._keys.home_name_prefix]
        )
        return int(reply) == 1

    async def find_home(self, *, user_id: str = "", username: str = "") -> HomeAssignment | None:
        """The record by ``user_id`` if given, else by ``username``; ``None`` if unknown."""
        if user_id:
            key = self._keys.home_by_id(user_id)
        elif username:
            key = self._keys.home_name_prefix + username.casefold()
        else:
            return None
        async with self._calls.guard():
            raw = await self._calls.client.get(key)
        if raw is None:
            return None
        record = json.loads(text(raw))
        return HomeAssignment(record["user_id"], record["username"], record["server_id"])

    async def cache_home(self, home: HomeAssignment, ttl: float) -> None:
        """Keep a Directory answer for ``ttl`` seconds, unless an assignment exists."""
        await self._write(home, ttl=ttl, cached=True)

    async def _write(self, home: HomeAssignment, *, ttl: float, cached: bool) -> None:
        record = json.dumps(
            {
                "user_id": home.user_id,
                "username": home.username,
                "username_key": home.username.casefold(),
                "server_id": home.server_id,
                "cached": cached,
            },
            sort_keys=True,
        )
        ttl_ms = max(1, round(ttl * 1000)) if ttl > 0 else 0
        await self._calls.run(
            self._set,
            [self._keys.home_by_id(home.user_id),
             self._keys.home_name_prefix + home.username.casefold()],
            [record, self._keys.home_name_prefix, str(ttl_ms), "1" if cached else "0"],
        )  # fmt: skip
