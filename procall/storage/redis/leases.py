"""Administrators' edit leases in Redis (the leases' ``LeaseStore``).

Key layout (all under ``procall:lease:``):

- ``procall:lease:res:<resource>`` — a hash (lease_id, holder, server, acquired, expires,
  fencing; times in milliseconds) with a PX TTL: the live lease of the resource. Redis
  counts the lifetime, so a lease lapses at the same moment for every server.
- ``procall:lease:fence:<resource>`` — the resource's fencing counter (INCR once per new
  lease; no TTL, so it never goes back while Redis keeps its data).
- ``procall:lease:live`` — a sorted set of the leased resources (score: expiry in ms), so
  listing reads only the leased resources, never a key scan; members whose hash lapsed are
  removed as the listing meets them.

Acquire, renew and release are single Lua scripts: two admins racing on one resource
cannot both get it, and a renewal or release acts only on the very lease it names.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from procall.errors import Unavailable
from procall.leases.model import EditLease

__all__ = ["RedisLeaseStore"]

_PREFIX = "procall:lease:"
_RES = _PREFIX + "res:"
_FENCE = _PREFIX + "fence:"
_LIVE = _PREFIX + "live"
_BACKEND = "Redis (edit leases)"

# KEYS: res, fence, live; ARGV: lease_id, holder, server, acquired_ms, expires_ms, ttl_ms,
# resource. Returns the live lease afterwards as a flat HGETALL list.
_ACQUIRE = """
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder and holder ~= ARGV[2] then
  return redis.call('HGETALL', KEYS[1])
end
if holder then
  redis.call('HSET', KEYS[1], 'expires', ARGV[5])
else
  local fencing = redis.call('INCR', KEYS[2])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'lease_id', ARGV[1], 'holder', ARGV[2], 'server', ARGV[3],
             'acquired', ARGV[4], 'expires', ARGV[5], 'fencing', fencing)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[7])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: res, live; ARGV: lease_id, expires_ms, ttl_ms, resource
_RENEW = """
if redis.call('HGET', KEYS[1], 'lease_id') ~= ARGV[1] then return {} end
redis.call('HSET', KEYS[1], 'expires', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: res, live; ARGV: lease_id, resource
_RELEASE = """
if redis.call('HGET', KEYS[1], 'lease_id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


# KEYS: live, res:<r1>, res:<r2>, ...; ARGV: r1, r2, ... — forgets those still lapsed (one
# may have been leased again since the listing read it)
_PRUNE = """
for i, resource in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('ZREM', KEYS[1], resource) end
end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _lease(resource: str, flat: Any) -> EditLease | None:
    """A lease from a flat HGETALL list or an HGETALL dict; None when empty."""
    if not flat:
        return None
    if isinstance(flat, dict):
        fields = {_text(k): _text(v) for k, v in flat.items()}
    else:
        fields = {_text(k): _text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
    try:
        return EditLease(
            lease_id=fields["lease_id"],
            resource=resource,
            holder_user_id=fields["holder"],
            server_id=fields.get("server", ""),
            acquire_time=int(fields["acquired"]) / 1000,
            expire_time=int(fields["expires"]) / 1000,
            fencing=int(fields["fencing"]),
        )
    except (KeyError, ValueError):
        return None  # a half-written hash (never made by these scripts): not a lease


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class RedisLeaseStore:
    """The live edit leases of every server, in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._prune = redis.register_script(_PRUNE)

    async def acquire(self, candidate: EditLease, ttl_ms: int) -> EditLease:
        """Take, renew (same holder) or report (another holder) the lease of a resource."""
        resource = candidate.resource
        try:
            flat = await self._acquire(
                keys=[_RES + resource, _FENCE + resource, _LIVE],
                args=[
                    candidate.lease_id,
                    candidate.holder_user_id,
                    candidate.server_id,
                    _ms(candidate.acquire_time),
                    _ms(candidate.expire_time),
                    ttl_ms,
                    resource,
                ],
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        lease = _lease(resource, flat)
        if lease is None:  # the script always leaves a lease behind
            raise Unavailable.backend(_BACKEND)
        return lease

    async def renew(
        self, resource: str, lease_id: str, expire_time: float, ttl_ms: int
    ) -> EditLease | None:
        """Extend the live lease ``lease_id``; None when it is not live."""
        try:
            flat = await self._renew(
                keys=[_RES + resource, _LIVE],
                args=[lease_id, _ms(expire_time), ttl_ms, resource],
            )
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return _lease(resource, flat)

    async def release(self, resource: str, lease_id: str) -> bool:
        """End the live lease ``lease_id``; False when it was not live."""
        try:
            done = await self._release(keys=[_RES + resource, _LIVE], args=[lease_id, resource])
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return bool(done)

    async def get(self, resource: str) -> EditLease | None:
        """The live lease of ``resource``."""
        try:
            fields = await self._redis.hgetall(_RES + resource)
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return _lease(resource, fields)

    async def live(self) -> list[EditLease]:
        """Every live lease; forgets the resources whose lease lapsed."""
        try:
            members = [_text(m) for m in await self._redis.zrange(_LIVE, 0, -1)]
            if not members:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for resource in members:
                    pipe.hgetall(_RES + resource)
                hashes = await pipe.execute()
            leases = []
            lapsed = []
            for resource, fields in zip(members, hashes, strict=True):
                lease = _lease(resource, fields)
                if lease is None:
                    lapsed.append(resource)
                else:
                    leases.append(lease)
            if lapsed:
                await self._prune(keys=[_LIVE, *(_RES + r for r in lapsed)], args=lapsed)
        except (RedisError, OSError):
            raise Unavailable.backend(_BACKEND) from None
        return leases
