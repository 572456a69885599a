"""The user -> home UCServer map in Redis (keys: see ``procall.storage.redis.registry``).

Whoever assigns home servers (the Directory on ``SetHomeServer``, an admin moving
users) writes the assignment here with ``set_home`` and removes it with
``clear_home``; the Lookup reads it for ``ResolveHome``. On a miss the Lookup
asks the Directory and keeps its answer with ``cache_home`` for a while; a cached
answer never replaces an assignment written with ``set_home``. Usernames are
matched case-insensitively (``str.casefold``), as the Directory does.

Whoever changes a home also announces it (``announce_moved``); every UCServer follows
the announcements (``follow_moved``) and drops its cached home of those users, so no
server keeps routing a moved user's events to the old home for long.

Example::

    homes = RedisHomeStore(redis_client)
    await homes.set_home("u-42", "alice", "ucserver-1")
    await homes.find_home(username="Alice")   # HomeAssignment(user_id="u-42", ...)
    await homes.clear_home("u-42")
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.errors import Unavailable
from procall.routing.models import HomeAssignment
from procall.storage.redis import _lookup_scripts as scripts
from procall.storage.redis._lookup_common import LookupKeys, RedisCalls, text

__all__ = ["MOVED_CHANNEL", "RedisHomeStore"]

#: Channel on which the ids of users whose home changed are published (space-separated),
#: so that every UCServer drops its cached homes of them at once.
MOVED_CHANNEL = "procall:homes:moved"


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

    async def announce_moved(self, user_ids: Sequence[str]) -> None:
        """Tell every follower that these users' homes changed."""
        if not user_ids:
            return
        async with self._calls.guard():
            await self._calls.client.publish(MOVED_CHANNEL, " ".join(user_ids))

    async def follow_moved(self) -> AsyncIterator[list[str]]:
        """The ids of users whose home changed, as each change is announced; ends with
        ``Unavailable`` when Redis fails (follow again once it answers)."""
        pubsub = self._calls.client.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(MOVED_CHANNEL)
            except (RedisError, OSError):
                raise Unavailable.backend("Redis") from None
            while True:
                try:
                    message = await pubsub.get_message(timeout=1.0)
                except (RedisError, OSError):
                    raise Unavailable.backend("Redis") from None
                if message is not None and message.get("type") == "message":
                    yield text(message["data"]).split()
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except (RedisError, OSError):
                pass
