"""Presence in Redis.

Key layout:

- ``procall:presence:<user_id>`` — a hash: ``av`` availability, ``note``,
  ``tel`` telephony state, ``by`` the delegate of the last change, ``ts`` its
  Unix time (Redis ``TIME``: seconds, a dot, six digits of microseconds), ``ver`` the
  version, and ``cap:<session_id>`` the capabilities of
  each live client session (comma-separated channel names). Presence is the
  aggregate: capabilities are the union over sessions; the user is OFFLINE
  when no session is left.
  ``srv`` names the UCServer holding the sessions; when that server dies, its
  peers turn the user OFFLINE (``mark_offline_if_on``).
- ``procall:presence:interest:<server_id>`` — a set of the users that clients
  on that server watch; it has a TTL the server renews, so a dead server's
  interest disappears by itself, and it is rebuilt after Redis restarts.
- ``procall:presence:alive:<server_id>`` — a marker with the same TTL, renewed
  by the server's heartbeat: when a renewal finds it gone, Redis lost the
  server's state (restart, or a missed TTL) and the server writes it back whole;
  otherwise a heartbeat costs two commands, whatever the number of users.

Every change runs as one Lua script that also bumps the version, unless it
changed nothing a watcher sees (availability, note, telephony, who set it, the
union of the capabilities): a second client of a user that comes or goes, or a
presence set to what it already is, keeps the version, so no watcher is told
the same presence twice. Versions are ``max(previous + 1, Redis TIME in
microseconds)``, so they keep growing even when Redis restarted empty and
watchers still hold versions of before.

Concurrent changes are pipelined: while one pipeline of changes is on its way,
the next ones queue and then go together, so a burst of SetPresence calls costs
a few round trips and one connection, not one of each per call (which, under
load, had redis-py open hundreds of connections and time out).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from procall.errors import Unavailable
from procall.presence.model import (
    Availability,
    Capabilities,
    Presence,
    PresenceChange,
    TelephonyState,
)

__all__ = ["RedisPresenceStore"]

_KEY = "procall:presence:"
_INTEREST = "procall:presence:interest:"
_ALIVE = "procall:presence:alive:"
_CHANNELS = ("chat", "audio", "video", "screen_share", "conference")

_UPDATE = """
local key = KEYS[1]
local function visible()
  local h = redis.call('HMGET', key, 'av', 'note', 'tel', 'by')
  local channels = {}
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 4) == 'cap:' then
      for name in string.gmatch(redis.call('HGET', key, f), '[^,]+') do channels[name] = true end
    end
  end
  local names = {}
  for name in pairs(channels) do names[#names + 1] = name end
  table.sort(names)
  return (h[1] or '') .. '|' .. (h[2] or '') .. '|' .. (h[3] or '') .. '|' .. (h[4] or '')
    .. '|' .. table.concat(names, ',')
end
local before = visible()
local known = redis.call('HEXISTS', key, 'ver') == 1
local i = 1
local nset = tonumber(ARGV[i]); i = i + 1
for n = 1, nset do redis.call('HSET', key, ARGV[i], ARGV[i + 1]); i = i + 2 end
local ndel = tonumber(ARGV[i]); i = i + 1
for n = 1, ndel do redis.call('HDEL', key, ARGV[i]); i = i + 1 end
if ARGV[i] == '1' then
  local av = redis.call('HGET', key, 'av')
  if (not av) or av == 'OFFLINE' then redis.call('HSET', key, 'av', 'AVAILABLE') end
end
if ARGV[i + 1] == '1' then
  local any = false
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 4) == 'cap:' then any = true; break end
  end
  if not any then redis.call('HSET', key, 'av', 'OFFLINE') end
end
if not known or visible() ~= before then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local ts = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
  local ver = math.max(tonumber(redis.call('HGET', key, 'ver') or '0') + 1, now)
  redis.call('HSET', key, 'ver', string.format('%d', ver), 'ts', ts)
end
local h = redis.call('HMGET', key, 'av', 'note', 'tel', 'by', 'ts', 'ver', 'srv')
for n = 1, 7 do if not h[n] then h[n] = '' end end
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, 4) == 'cap:' then h[#h + 1] = redis.call('HGET', key, f) end
end
return h
"""

#: The fields _UPDATE returns first, in order (then the capabilities of each session).
_UPDATE_FIELDS = ("av", "note", "tel", "by", "ts", "ver", "srv")

# KEYS: presence key; ARGV: dead server id -> the new hash, or nil when not on that server
_OFFLINE_IF_ON = """
local key = KEYS[1]
if redis.call('HGET', key, 'srv') ~= ARGV[1] then return nil end
if redis.call('HGET', key, 'av') == 'OFFLINE' then return nil end
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, 4) == 'cap:' then redis.call('HDEL', key, f) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ts = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
local ver = math.max(tonumber(redis.call('HGET', key, 'ver') or '0') + 1, now)
redis.call('HSET', key, 'av', 'OFFLINE', 'tel', 'IDLE', 'by', '',
           'ver', string.format('%d', ver), 'ts', ts)
return redis.call('HGETALL', key)
"""


def _caps_text(caps: Capabilities) -> str:
    return ",".join(name for name in _CHANNELS if getattr(caps, name))


def _caps_parse(text: str) -> Capabilities:
    names = set(text.split(","))
    return Capabilities(**{name: name in names for name in _CHANNELS})


def _decode(user_id: str, raw: dict[str, str]) -> Presence:
    if not raw:
        return Presence(user_id)
    caps = Capabilities()
    for name, value in raw.items():
        if name.startswith("cap:"):
            caps = caps.union(_caps_parse(value))
    try:
        availability = Availability(raw.get("av", "OFFLINE"))
        telephony = TelephonyState(raw.get("tel", "UNSPECIFIED"))
    except ValueError:
        availability, telephony = Availability.OFFLINE, TelephonyState.UNSPECIFIED
    return Presence(
        user_id=user_id,
        availability=availability,
        note=raw.get("note", ""),
        telephony=telephony,
        capabilities=caps,
        version=int(raw.get("ver", "0")),
        update_time=float(raw.get("ts", "0")),
        set_by=raw.get("by", ""),
        server_id=raw.get("srv", ""),
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


#: Changes sent in one pipeline at most.
_MAX_PIPELINE = 500


class _ScriptBatcher:
    """Runs concurrent calls of one Lua script together, one pipeline at a time."""

    def __init__(self, redis: aioredis.Redis, script: str) -> None:
        self._redis = redis
        self._script = script
        self._sha = hashlib.sha1(script.encode("utf-8")).hexdigest()
        self._queue: list[tuple[str, list[str | int], asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def call(self, key: str, args: list[str | int]) -> Any:
        """The script's result for ``key`` and ``args``; raises what Redis raised."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((key, args, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:_MAX_PIPELINE], self._queue[_MAX_PIPELINE:]
            try:
                results = await self._execute(batch)
            except asyncio.CancelledError:
                for _, _, future in [*batch, *self._queue]:
                    future.cancel()
                self._queue = []
                raise
            except Exception as exc:  # every waiter of the batch learns of it
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _execute(self, batch: list[tuple[str, list[str | int], Any]]) -> list[Any]:
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, args, _ in batch:
                    pipe.evalsha(self._sha, 1, key, *args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                await self._redis.script_load(self._script)  # Redis restarted: load again
                continue
            return results
        raise AssertionError("unreachable")


class RedisPresenceStore:
    """Reads and changes presence; every failure is ``Unavailable`` naming Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._update = _ScriptBatcher(redis, _UPDATE)
        self._offline_if_on = redis.register_script(_OFFLINE_IF_ON)

    async def update(
        self, user_id: str, change: PresenceChange, set_by: str, server_id: str = ""
    ) -> Presence:
        """Apply a change atomically and return the new presence with its version.

        ``server_id`` (the UCServer applying a session change) is recorded as the
        server holding the user's sessions.
        """
        sets: list[str] = ["by", set_by]
        if change.availability is not None:
            sets += ["av", change.availability.value]
        if change.note is not None:
            sets += ["note", change.note]
        if change.telephony is not None:
            sets += ["tel", change.telephony.value]
        online = "0"
        if change.session_capabilities is not None:
            session_id, caps = change.session_capabilities
            sets += [f"cap:{session_id}", _caps_text(caps)]
            online = "1"
            if server_id:
                sets += ["srv", server_id]
        deletes = [f"cap:{change.ended_session}"] if change.ended_session else []
        args: list[str | int] = [len(sets) // 2, *sets, len(deletes), *deletes, online]
        args.append("1" if change.ended_session else "0")
        try:
            flat = await self._update.call(_KEY + user_id, args)
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        values = [_text(v) for v in flat]
        raw = {k: v for k, v in zip(_UPDATE_FIELDS, values, strict=False) if v}
        for index, session_caps in enumerate(values[len(_UPDATE_FIELDS) :]):
            raw[f"cap:{index}"] = session_caps
        return _decode(user_id, raw)

    async def mark_offline_if_on(self, user_ids: Sequence[str], server_id: str) -> list[Presence]:
        """Turn OFFLINE those users whose sessions were on ``server_id`` (it died)."""
        changed: list[Presence] = []
        try:
            for user_id in user_ids:
                flat = await self._offline_if_on(keys=[_KEY + user_id], args=[server_id])
                if flat:
                    raw = {_text(k): _text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
                    changed.append(_decode(user_id, raw))
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        return changed

    async def get_many(self, user_ids: Sequence[str]) -> list[Presence]:
        """The presence of each user, in order (OFFLINE for users never seen)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.hgetall(_KEY + user_id)
                results = await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        return [
            _decode(user_id, {_text(k): _text(v) for k, v in raw.items()})
            for user_id, raw in zip(user_ids, results, strict=True)
        ]

    async def missing(self, user_ids: Sequence[str]) -> list[str]:
        """Which of these users have no presence stored (Redis restarted empty)."""
        if not user_ids:
            return []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.exists(_KEY + user_id)
                found = await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        return [u for u, exists in zip(user_ids, found, strict=True) if not exists]

    async def add_interest(self, server_id: str, user_ids: Iterable[str], ttl: float) -> None:
        """Record that clients on ``server_id`` watch these users (renews the TTL)."""
        users = list(user_ids)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if users:
                    pipe.sadd(_INTEREST + server_id, *users)
                pipe.pexpire(_INTEREST + server_id, max(1, int(ttl * 1000)))
                await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None

    async def heartbeat(self, server_id: str, ttl: float) -> bool:
        """Renew the TTL of the server's interest; False when its state was lost."""
        ttl_ms = max(1, int(ttl * 1000))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.pexpire(_INTEREST + server_id, ttl_ms)
                pipe.set(_ALIVE + server_id, "1", px=ttl_ms, get=True)
                _, previous = await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        return previous is not None

    async def remove_interest(self, server_id: str, user_ids: Iterable[str]) -> None:
        """Clients on ``server_id`` no longer watch these users."""
        users = list(user_ids)
        if not users:
            return
        try:
            await self._redis.srem(_INTEREST + server_id, *users)
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None

    async def interested_servers(self, user_id: str, server_ids: Sequence[str]) -> list[str]:
        """Which of ``server_ids`` have clients watching ``user_id``."""
        (found,) = await self.interested_servers_many([user_id], server_ids)
        return found

    async def interested_servers_many(
        self, user_ids: Sequence[str], server_ids: Sequence[str]
    ) -> list[list[str]]:
        """For each user, which of ``server_ids`` have clients watching it (one round trip;
        SMISMEMBER needs Redis 6.2 or newer)."""
        if not server_ids or not user_ids:
            return [[] for _ in user_ids]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for server_id in server_ids:
                    pipe.smismember(_INTEREST + server_id, list(user_ids))
                flags = await pipe.execute()
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None
        return [
            [s for s, watching in zip(server_ids, flags, strict=True) if watching[i]]
            for i in range(len(user_ids))
        ]
