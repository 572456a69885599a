"""The system-wide license pool in Redis.

Key layout (all under the ``procall:lic:`` prefix):

- ``procall:lic:total`` — the number of licenses configured (a string integer).
- ``procall:lic:servers`` — a set of the server ids that hold licenses.
- ``procall:lic:held:<server_id>`` — a set of the session ids holding a license
  through that server. The key has a TTL that the server renews with its
  heartbeat, so when a server dies its licenses return to the pool by
  themselves once the TTL lapses.

- ``procall:lic:alive:<server_id>`` — a marker with the same TTL, renewed by the
  heartbeat: when a renewal finds it gone, Redis lost the server's holdings (a
  restart, or a missed TTL).

Taking a license is one Lua script (count over the live servers' sets, compare
with the total, add), so two logins on two servers never both take the last one.
A heartbeat costs two commands whatever the number of sessions; the held set is
written back whole only when Redis lost it (after Redis comes back empty, every
server re-adds the sessions it still has), after a failed call (a license whose
return failed during an outage is freed then), and every ``FULL_RENEW_EVERY``
heartbeats as a safety net. Rewriting it on every heartbeat cost a UCServer
about a tenth of its busy time at 500 sessions (redis-py encodes each id in Python).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.admin_views.model import LicenseUsage
from procall.errors import Unavailable

__all__ = ["FULL_RENEW_EVERY", "LicensePool"]

#: Heartbeats between two full rewrites of a server's held set.
FULL_RENEW_EVERY = 30

_PREFIX = "procall:lic:"
_TOTAL = _PREFIX + "total"
_SERVERS = _PREFIX + "servers"

# KEYS: total, servers, held:<server>; ARGV: server_id, session_id, ttl_ms, held_prefix
_TAKE = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return 1
end
local used = 0
for _, server in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local n = redis.call('SCARD', ARGV[4] .. server)
  if n == 0 then redis.call('SREM', KEYS[2], server) end
  used = used + n
end
if used >= total then return 0 end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: servers; ARGV: held_prefix -> flat list server, count, server, count ...
_USAGE = """
local out = {}
for _, server in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local n = redis.call('SCARD', ARGV[1] .. server)
  if n == 0 then redis.call('SREM', KEYS[1], server) else
    table.insert(out, server)
    table.insert(out, n)
  end
end
return out
"""


class LicensePool:
    """One server's view of the shared license pool."""

    def __init__(self, redis: aioredis.Redis, server_id: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._server_id = server_id
        self._held = f"{_PREFIX}held:{server_id}"
        self._alive = f"{_PREFIX}alive:{server_id}"
        #: Whether the held set may differ from this server's sessions (a call failed).
        self._stale = True
        self._renewals = 0
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._take = redis.register_script(_TAKE)
        self._usage = redis.register_script(_USAGE)

    async def set_total(self, total: int) -> None:
        """Configure the size of the pool (system-wide)."""
        try:
            await self._redis.set(_TOTAL, int(total))
        except (RedisError, OSError):
            raise Unavailable.backend("Redis (license pool)") from None

    async def take(self, session_id: str) -> bool:
        """Take a license for a session; False when the pool is exhausted. Idempotent."""
        try:
            result = await self._take(
                keys=[_TOTAL, _SERVERS, self._held],
                args=[self._server_id, session_id, self._ttl_ms, f"{_PREFIX}held:"],
            )
        except (RedisError, OSError):
            self._stale = True
            raise Unavailable.backend("Redis (license pool)") from None
        return bool(result)

    async def give_back(self, session_id: str) -> None:
        """Return a session's license to the pool."""
        try:
            await self._redis.srem(self._held, session_id)
        except (RedisError, OSError):
            self._stale = True
            raise Unavailable.backend("Redis (license pool)") from None

    async def renew(self, session_ids: Iterable[str]) -> None:
        """Keep exactly this server's licenses alive (heartbeat).

        Renews the TTL; the held set is replaced by ``session_ids`` (read only then) when
        Redis lost it, after a failed call and every ``FULL_RENEW_EVERY`` heartbeats, so
        licenses whose return failed during a Redis outage are freed, and holdings lost
        in a Redis restart come back.
        """
        self._renewals += 1
        try:
            if not self._stale and self._renewals % FULL_RENEW_EVERY:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.pexpire(self._held, self._ttl_ms)
                    pipe.set(self._alive, "1", px=self._ttl_ms, get=True)
                    _, previous = await pipe.execute()
                if previous is not None:
                    return
            sessions = list(session_ids)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._held)
                if sessions:
                    pipe.sadd(self._held, *sessions)
                    pipe.sadd(_SERVERS, self._server_id)
                    pipe.pexpire(self._held, self._ttl_ms)
                pipe.set(self._alive, "1", px=self._ttl_ms)
                await pipe.execute()
            self._stale = False
        except (RedisError, OSError):
            self._stale = True
            raise Unavailable.backend("Redis (license pool)") from None

    async def usage(self) -> LicenseUsage:
        """The pool's size and who holds how many."""
        try:
            total = int(await self._redis.get(_TOTAL) or 0)
            flat = await self._usage(keys=[_SERVERS], args=[f"{_PREFIX}held:"])
        except (RedisError, OSError):
            raise Unavailable.backend("Redis (license pool)") from None
        pairs = {
            (k.decode() if isinstance(k, bytes) else str(k)): int(v)
            for k, v in zip(flat[::2], flat[1::2], strict=True)
        }
        return LicenseUsage(total, pairs)
