"""Which MediaServer each call uses, in Redis (keys: see ``procall.storage.redis.registry``).

An allocation binds a call to one run (server id and epoch) of a MediaServer.
It counts as current only while that run is live: when the server dies or
restarts, the call gets a new allocation. Allocations expire after
``allocation_ttl`` seconds so that calls nobody released do not count forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from procall.routing.models import ServerInfo, ServerRole
from procall.routing.ports import AllocationState
from procall.routing.selection import Candidate
from procall.storage.redis import _lookup_scripts as scripts
from procall.storage.redis._lookup_common import LookupKeys, RedisCalls, decode_server, text

__all__ = ["RedisMediaAllocations"]


def _server(fields: Sequence[Any]) -> ServerInfo:
    return decode_server(*fields[:5])


class RedisMediaAllocations:
    """``procall.routing.ports.MediaAllocations`` in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        allocation_ttl: float = 24 * 3600.0,
        keys: LookupKeys | None = None,
        op_timeout: float | None = None,
    ) -> None:
        self._calls = RedisCalls(client, op_timeout)
        self._keys = keys or LookupKeys()
        self._ttl_ms = str(max(1, round(allocation_ttl * 1000)))
        self._state = self._calls.script(scripts.ALLOCATION_STATE)
        self._claim = self._calls.script(scripts.CLAIM)
        self._release = self._calls.script(scripts.RELEASE)

    async def state(self, call_id: str) -> AllocationState:
        """The call's allocation if its server run is live, and every live MediaServer."""
        k = self._keys
        current, flat = await self._calls.run(
            self._state,
            [k.call(call_id), k.index],
            [k.server_prefix, k.media_prefix, ServerRole.MEDIA.value],
        )
        candidates = tuple(
            Candidate(_server(flat[i : i + 6]), int(text(flat[i + 5])))
            for i in range(0, len(flat), 6)
        )
        return AllocationState(_server(current) if current else None, candidates)

    async def claim(
        self, call_id: str, server: ServerInfo, exclude: Sequence[str] = ()
    ) -> ServerInfo | None:
        """Bind the call to ``server`` unless a live server has it (see the port)."""
        k = self._keys
        reply = await self._calls.run(
            self._claim,
            [k.call(call_id)],
            [k.server_prefix, k.media_prefix, call_id, server.server_id, str(server.epoch),
             self._ttl_ms, ",".join(exclude)],
        )  # fmt: skip
        if text(reply[0]) != "bound":
            return None
        return _server(reply[1:])

    async def release(self, call_id: str) -> None:
        """Forget the call's allocation (idempotent)."""
        await self._calls.run(self._release, [self._keys.call(call_id)],
                              [self._keys.media_prefix, call_id])  # fmt: skip
