"""Helpers shared by the Redis stores of the routing view: keys, codec, error guard.

The key layout itself is documented in ``procall.storage.redis.registry``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from procall.clock import UnixTime
from procall.errors import Unavailable
from procall.routing.models import DependencyHealth, ServerInfo, ServerRole

__all__ = [
    "DEFAULT_PREFIX",
    "LookupKeys",
    "RedisCalls",
    "decode_server",
    "encode_state",
    "text",
]

#: Prefix of every key and channel of the routing view.
DEFAULT_PREFIX = "procall:lookup:"


@dataclass(frozen=True)
class LookupKeys:
    """Names of the routing view's keys under one prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def server_prefix(self) -> str:
        """Prefix of the per-server hashes (``<prefix>server:<server_id>``)."""
        return f"{self.prefix}server:"

    def server(self, server_id: str) -> str:
        """The TTL'd hash of one live server."""
        return self.server_prefix + server_id

    @property
    def index(self) -> str:
        """Sorted set of announced servers, scored by their expiry (ms, Redis clock)."""
        return f"{self.prefix}servers"

    @property
    def epochs(self) -> str:
        """Hash server id -> highest epoch seen (the fence)."""
        return f"{self.prefix}epochs"

    @property
    def closed(self) -> str:
        """Hash server id -> epoch of the run that deregistered."""
        return f"{self.prefix}closed"

    @property
    def known(self) -> str:
        """Hash server id -> last known info (kept after the server is gone)."""
        return f"{self.prefix}known"

    @property
    def epoch_counter(self) -> str:
        """Counter issuing epochs."""
        return f"{self.prefix}epoch"

    @property
    def seq(self) -> str:
        """Counter numbering the topology changes published."""
        return f"{self.prefix}seq"

    @property
    def channel(self) -> str:
        """Pub/sub channel of topology changes."""
        return f"{self.prefix}topology"

    def call(self, call_id: str) -> str:
        """Hash holding a call's MediaServer allocation."""
        return f"{self.prefix}call:{call_id}"

    @property
    def media_prefix(self) -> str:
        """Prefix of the per-run allocation sets (``<prefix>media:<id>:<epoch>:calls``)."""
        return f"{self.prefix}media:"

    def home_by_id(self, user_id: str) -> str:
        """A user's home record, by user id."""
        return f"{self.prefix}home:id:{user_id}"

    @property
    def home_name_prefix(self) -> str:
        """Prefix of the home records by (case-folded) username."""
        return f"{self.prefix}home:name:"


def text(value: Any) -> str:
    """A Redis reply (bytes or str) as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def encode_state(server: ServerInfo) -> str:
    """The part of a server's info that only its heartbeats change, as canonical JSON.

    Canonical (sorted keys, no spaces) so that the scripts can compare two states
    as strings to tell a real change from a plain renewal.
    """
    return json.dumps(
        {
            "role": server.role.value,
            "address": server.address,
            "capacity": server.capacity,
            "load": server.load,
            "draining": server.draining,
            "degraded": server.degraded,
            "version": server.version,
            "outbox_depth": server.outbox_depth,
            "mesh_address": server.mesh_address,
            "legs": server.legs,
            "cpu_percent": server.cpu_percent,
            "dependencies": [[d.name, d.available, d.detail] for d in server.dependencies],
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def _time(ms: Any) -> UnixTime | None:
    """Stored whole milliseconds (0 or absent: not known) as Unix seconds."""
    if ms is None or ms is False:
        return None
    value = int(text(ms))
    if value <= 0:
        return None
    return value / 1000


def decode_server(
    server_id: Any, epoch: Any, state: Any, start_ms: Any = None, heartbeat_ms: Any = None
) -> ServerInfo:
    """Rebuild a ``ServerInfo`` from the fields the scripts store and return."""
    fields = json.loads(text(state))
    return ServerInfo(
        server_id=text(server_id),
        role=ServerRole(fields["role"]),
        address=fields["address"],
        epoch=int(text(epoch)),
        capacity=int(fields["capacity"]),
        load=int(fields["load"]),
        draining=bool(fields["draining"]),
        degraded=bool(fields["degraded"]),
        start_time=_time(start_ms),
        heartbeat_time=_time(heartbeat_ms),
        version=fields.get("version", ""),
        outbox_depth=int(fields.get("outbox_depth", 0)),
        mesh_address=str(fields.get("mesh_address", "")),
        legs=int(fields.get("legs", 0)),
        cpu_percent=int(fields.get("cpu_percent", 0)),
        dependencies=tuple(
            DependencyHealth(str(name), bool(available), str(detail))
            for name, available, detail in fields.get("dependencies", ())
        ),
    )


class RedisCalls:
    """Runs Redis commands so that any failure becomes ``Unavailable`` naming Redis.

    ``op_timeout`` bounds one operation as a whole (a Sentinel lookup plus the
    command), on top of the client's socket timeouts.
    """

    def __init__(self, client: aioredis.Redis, op_timeout: float | None = None) -> None:
        self.client = client
        self._op_timeout = op_timeout

    def script(self, source: str) -> AsyncScript:
        """Register a Lua script (loaded again by itself after a Redis restart)."""
        return self.client.register_script(source)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Map Redis and socket errors (and the operation timeout) to ``Unavailable``."""
        try:
            async with asyncio.timeout(self._op_timeout):
                yield
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            raise Unavailable.backend("Redis") from exc

    async def run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> Any:
        """Run ``script`` under the guard."""
        async with self.guard():
            return await script(keys=list(keys), args=list(args))
