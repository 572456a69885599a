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

Changes go in batches: while one batch is on its way, the next ones queue, and at
most one batch starts per ``tick`` (a lone change after a quiet moment goes at
once). A batch is one call of one script for all its changes, which also answers,
for each changed user, which of the other UCServers watch it: a change costs one
round trip and one command of redis-py's Python, instead of a script call plus
an interest lookup (two round trips of ~75-150 us of Python each). Without
batching, under load, redis-py had opened hundreds of connections and timed out.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

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

# KEYS: the interest sets of the peers asked about (ARGV[1] of them), then the presence key
# of each change. ARGV: the number of peers, then per change: the user id, the number of
# fields to set and the pairs, the number of fields to delete and the names, whether a
# session started (1/0), whether one ended (1/0).
# Returns per change: the _UPDATE_FIELDS, the number of sessions and their capabilities,
# then for each peer whether it watches the user (1/0).
_UPDATE = """
local npeers = tonumber(ARGV[1])
local function visible(key)
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
local function apply(key, i)
  local user = ARGV[i]; i = i + 1
  local before = visible(key)
  local known = redis.call('HEXISTS', key, 'ver') == 1
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
  i = i + 2
  if not known or visible(key) ~= before then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local ts = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
    local ver = math.max(tonumber(redis.call('HGET', key, 'ver') or '0') + 1, now)
    redis.call('HSET', key, 'ver', string.format('%d', ver), 'ts', ts)
  end
  local h = redis.call('HMGET', key, 'av', 'note', 'tel', 'by', 'ts', 'ver', 'srv')
  for n = 1, 7 do if not h[n] then h[n] = '' end end
  local caps = {}
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 4) == 'cap:' then caps[#caps + 1] = redis.call('HGET', key, f) end
  end
  h[#h + 1] = #caps
  for _, c in ipairs(caps) do h[#h + 1] = c end
  for n = 1, npeers do h[#h + 1] = redis.call('SISMEMBER', KEYS[n], user) end
  return h, i
end
local out = {}
local i = 2
for k = npeers + 1, #KEYS do
  local h
  h, i = apply(KEYS[k], i)
  out[#out + 1] = h
end
return out
"""

#: The fields _UPDATE returns first for each change, in order.
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


#: Changes sent in one script call at most.
_MAX_BATCH = 500


class _Change(NamedTuple):
    """One queued change: the user, its script arguments, the peers asked about."""

    user_id: str
    args: list[str]
    peers: Sequence[str]
    result: asyncio.Future[tuple[Presence, list[str]]]


class _UpdateBatcher:
    """Runs the queued changes together: one call of ``_UPDATE`` per batch, one batch at a
    time, at most one batch started per ``tick`` seconds."""

    def __init__(self, redis: aioredis.Redis, tick: float) -> None:
        self._redis = redis
        self._tick = tick
        self._sha = hashlib.sha1(_UPDATE.encode("utf-8")).hexdigest()
        self._queue: list[_Change] = []
        self._runner: asyncio.Task[None] | None = None
        self._started = -float("inf")

    async def call(
        self, user_id: str, args: list[str], peers: Sequence[str]
    ) -> tuple[Presence, list[str]]:
        """The new presence of ``user_id`` and which of ``peers`` watch it; raises what
        Redis raised."""
        future: asyncio.Future[tuple[Presence, list[str]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.append(_Change(user_id, args, peers, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Change] = []
        try:
            while self._queue:
                wait = self._started + self._tick - loop.time()
                if wait > 0:  # the changes of the rest of the tick join this batch
                    await asyncio.sleep(wait)
                self._started = loop.time()
                batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
                try:
                    results = await self._execute(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # every waiter of the batch learns of it
                    for change in batch:
                        if not change.result.done():
                            change.result.set_exception(exc)
                    batch = []
                    continue
                for change, result in zip(batch, results, strict=True):
                    if not change.result.done():
                        change.result.set_result(result)
                batch = []
        except asyncio.CancelledError:
            for change in [*batch, *self._queue]:
                change.result.cancel()
            self._queue = []
            raise

    async def _execute(self, batch: list[_Change]) -> list[tuple[Presence, list[str]]]:
        peers = sorted({p for change in batch for p in change.peers})
        keys = [_INTEREST + p for p in peers] + [_KEY + change.user_id for change in batch]
        args: list[str] = [str(len(peers))]
        for change in batch:
            args += (change.user_id, *change.args)
        try:
            replies = await self._redis.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted: load it again
            await self._redis.script_load(_UPDATE)
            replies = await self._redis.evalsha(self._sha, len(keys), *keys, *args)
        return [
            _decode_update(change, reply, peers)
            for change, reply in zip(batch, replies, strict=True)
        ]


def _decode_update(
    change: _Change, reply: list[Any], peers: Sequence[str]
) -> tuple[Presence, list[str]]:
    fields = len(_UPDATE_FIELDS)
    raw = {k: v for k, v in zip(_UPDATE_FIELDS, map(_text, reply[:fields]), strict=True) if v}
    sessions = int(reply[fields])
    for index, caps in enumerate(reply[fields + 1 : fields + 1 + sessions]):
        raw[f"cap:{index}"] = _text(caps)
    flags = reply[fields + 1 + sessions :]
    wanted = set(change.peers)
    watching = [p for p, flag in zip(peers, flags, strict=True) if flag and p in wanted]
    return _decode(change.user_id, raw), watching


class RedisPresenceStore:
    """Reads and changes presence; every failure is ``Unavailable`` naming Redis."""

    def __init__(self, redis: aioredis.Redis, tick: float = 0.0) -> None:
        """``tick``: seconds between the starts of two batches of changes (a change
        waits at most that long for the changes that go with it)."""
        self._redis = redis
        self._update = _UpdateBatcher(redis, tick)
        self._offline_if_on = redis.register_script(_OFFLINE_IF_ON)

    async def update(
        self, user_id: str, change: PresenceChange, set_by: str, server_id: str = ""
    ) -> Presence:
        """Apply a change atomically and return the new presence with its version.

        ``server_id`` (the UCServer applying a session change) is recorded as the
        server holding the user's sessions.
        """
        presence, _ = await self.update_routed(user_id, change, set_by, server_id, ())
        return presence

    async def update_routed(
        self,
        user_id: str,
        change: PresenceChange,
        set_by: str,
        server_id: str,
        peers: Sequence[str],
    ) -> tuple[Presence, list[str]]:
        """``update``, and which of the UCServers ``peers`` watch the user, in one step."""
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
        args = [str(len(sets) // 2), *sets, str(len(deletes)), *deletes, online]
        args.append("1" if change.ended_session else "0")
        try:
            return await self._update.call(user_id, args, peers)
        except (RedisError, OSError):
            raise Unavailable.backend("Redis") from None

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
