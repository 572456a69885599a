"""The routing view in Redis: live servers, topology changes, media allocation, homes.

Everything the Lookup knows lives here, so any number of Lookup processes can
serve one Redis. All writes that must be atomic run as Lua scripts
(``_lookup_scripts``); times are Redis' own (``TIME``).

Key layout (prefix ``procall:lookup:``; ``<id>`` is a server id)::

    server:<id>          hash  epoch, state (JSON: role, address, capacity, load,
                               draining, degraded, version), start, hb (ms);
                               PEXPIRE = heartbeat TTL. Exists <=> the server is live.
    servers              zset  id -> expiry (ms). Membership means "announced live":
                               a server joins it with its JOINED and leaves it with
                               its LEFT, so each departure is announced exactly once.
    epochs               hash  id -> highest epoch seen (the fence; no TTL).
    closed               hash  id -> epoch of the run that deregistered.
    known                hash  id -> last known {epoch, state, start} (no TTL), for
                               ResolveHome of a home server that is down.
    epoch                string counter issuing epochs.
    seq                  string counter numbering published topology changes.
    topology             pub/sub channel: {"seq", "kind": JOINED|UPDATED|LEFT, "id",
                               and for JOINED/UPDATED "epoch", "state", "start", "hb"}.
    call:<call_id>       hash  server, epoch: the call's MediaServer (PEXPIRE =
                               allocation TTL, so a call never released is forgotten).
    media:<id>:<epoch>:calls
                         set   call ids allocated to that run of a MediaServer.
    home:id:<user_id>    string JSON {user_id, username, username_key, server_id,
                               cached}; no TTL when assigned with ``set_home``,
                               the home-cache TTL when cached from the Directory.
    home:name:<username> string the same record, by case-folded username.

Epochs: ``epoch`` is an INCR counter. If Redis loses it (restarted without
persistence) it restarts from the current time in microseconds, which is above
every epoch it issued before (that would take more than a million registrations
per second since the first one); and a heartbeat carrying an epoch above the
counter raises the counter to it. So a restarted server always gets a larger
epoch than any it held, and the fence holds across a Redis restart. An epoch
above both the counter and the clock plus an hour (clock skew) was never issued
and is refused, so one bad caller cannot push the counter towards 2**53 (the
limit of exact numbers in Lua).

Expiry is noticed without keyspace notifications: each Lookup runs ``sweep``
every fraction of the TTL; the sweep script removes expired members of
``servers`` and publishes their LEFT in the same atomic step, so with several
Lookups sweeping, each LEFT is published once. A heartbeat that finds its own
entry expired but not yet swept publishes the LEFT itself before its JOINED.

Watchers subscribe to ``topology``, then read a snapshot together with ``seq``;
they skip changes numbered at or below it and take a gap in the numbers (a lost
message) as a reason to read a fresh snapshot. The domain's ``TopologyView``
turns snapshots and changes into one report per change.

The stores: ``RedisServerRegistry`` (servers, here), ``RedisMediaAllocations``
(``media_allocations``) and ``RedisHomeStore`` (``homes``: ``set_home`` /
``clear_home`` for whoever assigns home servers); all three are importable from
this module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import redis.asyncio as aioredis

from procall.errors import Aborted, InvalidArgument, Unavailable
from procall.routing.models import ServerInfo
from procall.routing.topology import Listing, ServerObserved, TopologyObservation
from procall.storage.redis import _lookup_scripts as scripts
from procall.storage.redis._lookup_common import (
    LookupKeys,
    RedisCalls,
    decode_server,
    encode_state,
    text,
)
from procall.storage.redis.homes import RedisHomeStore
from procall.storage.redis.media_allocations import RedisMediaAllocations

__all__ = ["RedisHomeStore", "RedisMediaAllocations", "RedisServerRegistry"]

_SWEEP_BATCH = 1000


def _servers(flat: Sequence[Any]) -> list[ServerInfo]:
    """Decode the flat ``id, epoch, state, start, hb`` groups the scripts return."""
    return [decode_server(*flat[i : i + 5]) for i in range(0, len(flat), 5)]


class RedisServerRegistry:
    """The registry of live servers (``procall.routing.ports.ServerRegistry``) in Redis.

    ``check_interval`` is how often a watcher with no traffic verifies that it
    missed no change (and that Redis still answers).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keys: LookupKeys | None = None,
        op_timeout: float | None = None,
        check_interval: float = 1.0,
    ) -> None:
        self._calls = RedisCalls(client, op_timeout)
        self._keys = keys or LookupKeys()
        self._check_interval = check_interval
        self._heartbeat = self._calls.script(scripts.HEARTBEAT)
        self._deregister = self._calls.script(scripts.DEREGISTER)
        self._sweep = self._calls.script(scripts.SWEEP)
        self._snapshot = self._calls.script(scripts.SNAPSHOT)

    async def heartbeat(self, server: ServerInfo, ttl: float) -> int:
        """Register or renew ``server`` for ``ttl`` seconds; its epoch (see the module doc)."""
        k = self._keys
        start_ms = int(server.start_time * 1000) if server.start_time else 0
        reply = await self._calls.run(
            self._heartbeat,
            [k.server(server.server_id), k.index, k.epochs, k.closed, k.known,
             k.epoch_counter, k.seq],
            [server.server_id, str(server.epoch), encode_state(server),
             str(max(1, round(ttl * 1000))), str(start_ms), k.channel],
        )  # fmt: skip
        status, epoch = text(reply[0]), int(text(reply[1]))
        if status == "invalid":
            raise InvalidArgument.field("server.epoch", "was never issued by the Lookup")
        if status == "stale":
            raise Aborted(
                f"epoch {server.epoch} of server {server.server_id} is stale; "
                "a newer run of it registered",
                reason="STALE_VERSION",
                metadata={"server_id": server.server_id, "epoch": str(epoch)},
            )
        return epoch

    async def deregister(self, server_id: str, epoch: int) -> bool:
        """Remove run ``epoch`` of the server; ``False`` when a newer run owns the id."""
        k = self._keys
        reply = await self._calls.run(
            self._deregister,
            [k.server(server_id), k.index, k.epochs, k.closed, k.seq, k.epoch_counter],
            [server_id, str(epoch), k.channel],
        )
        return int(reply) == 1

    async def live_servers(self) -> list[ServerInfo]:
        """Every live server, by id."""
        _, servers = await self._read_snapshot()
        return servers

    async def last_known(self, server_id: str) -> tuple[ServerInfo | None, bool]:
        """The server's live info, else its last known info; and whether it is live."""
        async with self._calls.guard():
            pipe = self._calls.client.pipeline(transaction=False)
            pipe.hmget(self._keys.server(server_id), ["epoch", "state", "start", "hb"])
            pipe.hget(self._keys.known, server_id)
            live, known = await pipe.execute()
        if live[0] is not None:
            return decode_server(server_id, *live), True
        if known is not None:
            record = json.loads(text(known))
            return decode_server(
                server_id, record["epoch"], record["state"], record["start"]
            ), False
        return None, False

    async def sweep(self) -> int:
        """Announce and retire every entry whose TTL passed; how many."""
        k = self._keys
        reply = await self._calls.run(
            self._sweep, [k.index, k.seq], [k.server_prefix, k.channel, str(_SWEEP_BATCH)]
        )
        return int(reply)

    async def current_seq(self) -> int:
        """Number of the last topology change published."""
        async with self._calls.guard():
            value = await self._calls.client.get(self._keys.seq)
        return int(text(value)) if value is not None else 0

    async def _read_snapshot(self) -> tuple[int, list[ServerInfo]]:
        k = self._keys
        reply = await self._calls.run(self._snapshot, [k.index, k.seq], [k.server_prefix])
        return int(text(reply[0])), _servers(reply[1:])

    async def watch(self) -> AsyncGenerator[TopologyObservation, None]:
        """A listing of the live servers, then every change (see the module doc).

        Ends by raising ``Unavailable`` when Redis fails; the caller watches anew.
        """
        pubsub: Any = self._calls.client.pubsub()  # Any: redis-py leaves aclose() untyped
        try:
            async with self._calls.guard():
                await pubsub.subscribe(self._keys.channel)
            last, servers = await self._read_snapshot()
            yield Listing(tuple(servers))
            async for observation in self._follow(pubsub, last):
                yield observation
        finally:
            try:
                await pubsub.aclose()
            except Exception:  # the connection may already be gone; nothing to release
                pass

    async def _follow(self, pubsub: Any, last: int) -> AsyncGenerator[TopologyObservation, None]:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._check_interval
        # a change number the counter showed at the previous check, not received since
        awaited: int | None = None
        while True:
            wait = max(0.0, next_check - loop.time())
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            except Exception as exc:  # any failure of the subscription ends the feed
                raise Unavailable.backend("Redis") from exc
            if message is not None and message.get("type") == "message":
                event = json.loads(text(message["data"]))
                seq = int(event["seq"])
                if seq <= last:
                    continue
                if seq != last + 1:
                    last, servers = await self._read_snapshot()
                    yield Listing(tuple(servers))
                    continue
                last = seq
                yield ServerObserved(str(event["id"]), self._decode_event(event))
            if loop.time() >= next_check:
                current = await self.current_seq()
                if awaited is not None and last < awaited:
                    last, servers = await self._read_snapshot()
                    yield Listing(tuple(servers))
                awaited = current if current > last else None
                next_check = loop.time() + self._check_interval

    @staticmethod
    def _decode_event(event: dict[str, Any]) -> ServerInfo | None:
        if event["kind"] == "LEFT":
            return None
        return decode_server(event["id"], event["epoch"], event["state"], event["start"],
                             event["hb"])  # fmt: skip
