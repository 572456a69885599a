"""The Lookup's use-cases: registration, topology, home resolution, media allocation.

``RoutingService`` holds no state of its own: everything lives behind the ports
(``procall.routing.ports``), in Redis in production, so any number of Lookup
processes can serve the same view.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from procall.errors import InvalidArgument, NotFound, Unavailable
from procall.routing.models import MAX_EPOCH, HeartbeatAck, ServerInfo, ServerRole, TopologyChange
from procall.routing.ports import HomeDirectory, HomeStore, MediaAllocations, ServerRegistry
from procall.routing.selection import choose_two_random
from procall.routing.topology import TopologyView

__all__ = ["ResolvedHome", "RoutingService"]

_log = logging.getLogger(__name__)

# A claim fails only when the chosen MediaServer vanished between reading the
# candidates and claiming; a few fresh attempts settle that.
_CLAIM_ATTEMPTS = 3
_MAX_ID_LENGTH = 256
_MAX_COUNT = 2**32 - 1


@dataclass(frozen=True)
class ResolvedHome:
    """A user's home server (its last known info when it is down) and whether it is live."""

    user_id: str
    server: ServerInfo
    live: bool


def _require_id(field: str, value: str) -> None:
    if not value:
        raise InvalidArgument.field(field, "is required")
    if len(value) > _MAX_ID_LENGTH:
        raise InvalidArgument.field(field, f"must be at most {_MAX_ID_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidArgument.field(field, "must not contain spaces or control characters")


class RoutingService:
    """The routing view's use-cases over its stores.

    Args:
        registry: live servers.
        allocations: call -> MediaServer.
        homes: user -> home server (with the cache of Directory answers).
        directory: asked when ``homes`` has no record; ``None`` when not configured.
        ttl: seconds a registration lives without a heartbeat.
        home_cache_ttl: seconds a Directory answer is kept in ``homes``.
        rng: randomness of the media-server choice (seed it in tests).
    """

    def __init__(
        self,
        registry: ServerRegistry,
        allocations: MediaAllocations,
        homes: HomeStore,
        directory: HomeDirectory | None,
        *,
        ttl: float,
        home_cache_ttl: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._registry = registry
        self._allocations = allocations
        self._homes = homes
        self._directory = directory
        self._ttl = ttl
        self._home_cache_ttl = home_cache_ttl
        self._rng = rng or random.Random()

    @property
    def ttl(self) -> float:
        """Seconds a registration lives without a heartbeat."""
        return self._ttl

    # -- registration -------------------------------------------------------------------

    async def heartbeat(self, server: ServerInfo) -> HeartbeatAck:
        """Register or renew ``server``; ``epoch == 0`` starts a new run.

        Raises ``Aborted`` (``STALE_VERSION``) for a stale epoch: a newer run of the
        same server id registered, or this run deregistered.
        """
        self.check_server(server)
        # the registry stamps its own heartbeat time
        epoch = await self._registry.heartbeat(replace(server, heartbeat_time=None), self._ttl)
        return HeartbeatAck(epoch=epoch, ttl_seconds=self._ttl)

    def check_server(self, server: ServerInfo) -> None:
        """Raise ``InvalidArgument`` naming the first field of ``server`` a heartbeat refuses."""
        _require_id("server.server_id", server.server_id)
        if not server.address:
            raise InvalidArgument.field("server.address", "is required")
        if len(server.address) > _MAX_ID_LENGTH:
            raise InvalidArgument.field("server.address", "is too long")
        if not 0 <= server.epoch <= MAX_EPOCH:
            raise InvalidArgument.field("server.epoch", f"must be between 0 and {MAX_EPOCH}")
        if not (0 <= server.capacity <= _MAX_COUNT and 0 <= server.load <= _MAX_COUNT):
            raise InvalidArgument.field("server.load", "load and capacity must fit in 32 bits")
        if len(server.version) > _MAX_ID_LENGTH:
            raise InvalidArgument.field("server.version", "is too long")

    async def deregister(self, server_id: str, epoch: int) -> None:
        """Remove run ``epoch`` of the server at once; an older run's call changes nothing."""
        _require_id("server_id", server_id)
        if not 0 < epoch <= MAX_EPOCH:
            raise InvalidArgument.field("epoch", "must be the epoch the heartbeat returned")
        if not await self._registry.deregister(server_id, epoch):
            _log.info(
                "ignored deregistration of %s epoch %d: a newer run owns it", server_id, epoch
            )

    async def list_servers(self, role: ServerRole | None = None) -> list[ServerInfo]:
        """The live servers (of ``role``, when given), by role then id."""
        servers = await self._registry.live_servers()
        chosen = [s for s in servers if role is None or s.role is role]
        return sorted(chosen, key=lambda s: (s.role.value, s.server_id))

    async def watch(self, role: ServerRole | None = None) -> AsyncIterator[TopologyChange]:
        """``JOINED`` for every live server, then each change once, until Redis fails."""
        view = TopologyView(role)
        async with aclosing(self._registry.watch()) as feed:
            async for observation in feed:
                for change in view.observe(observation):
                    yield change

    async def sweep(self) -> int:
        """Announce the departure of servers whose registration lapsed; how many."""
        return await self._registry.sweep()

    async def sweep_forever(self, interval: float) -> None:
        """Sweep every ``interval`` seconds until cancelled; Redis failures are retried."""
        task = asyncio.current_task()
        while True:
            try:
                await self._registry.sweep()
            except Unavailable:
                _log.debug("sweep skipped: Redis is unavailable")
            except Exception:  # a background task must outlive any one failure
                _log.exception("sweep of expired registrations failed")
            if task is not None and task.cancelling():
                # a client library turned our cancellation into an error: stop anyway
                raise asyncio.CancelledError
            await asyncio.sleep(interval)

    # -- homes ----------------------------------------------------------------------------

    async def resolve_home(self, *, user_id: str = "", username: str = "") -> ResolvedHome:
        """The user's home UCServer: from the shared map, else from the Directory (cached).

        Raises ``NotFound`` for an unknown user or one without a home server, and
        ``Unavailable`` naming Redis or the Directory when they cannot answer.
        """
        if not user_id and not username:
            raise InvalidArgument.field("user_id", "one of user_id and username is required")
        for field, value in (("user_id", user_id), ("username", username)):
            if value:
                _require_id(field, value)
        home = await self._homes.find_home(user_id=user_id, username=username)
        if home is None and self._directory is not None:
            home = await self._directory.find_home(user_id=user_id, username=username)
            if home is not None and home.server_id:
                await self._homes.cache_home(home, self._home_cache_ttl)
        who = user_id or username
        if home is None:
            raise NotFound(f"user {who} is not known", metadata={"user": who})
        if not home.server_id:
            raise NotFound(f"user {who} has no home server", metadata={"user": who})
        server, live = await self._registry.last_known(home.server_id)
        if server is None:
            server = ServerInfo(server_id=home.server_id, role=ServerRole.UCSERVER, address="")
        return ResolvedHome(home.user_id, server, live)

    # -- media ----------------------------------------------------------------------------

    async def allocate_media_server(self, call_id: str, exclude: Sequence[str] = ()) -> ServerInfo:
        """The call's MediaServer: its current one while that is live, else a new choice.

        Servers in ``exclude`` (found failed by a UCServer re-anchoring the call) count as
        dead for this call: neither kept nor chosen.

        A new choice goes to a live, non-draining MediaServer with headroom, by two
        random choices on load / capacity. Raises ``Unavailable`` (none live, all
        draining) or ``ResourceExhausted`` (all at capacity).
        """
        _require_id("call_id", call_id)
        for _ in range(_CLAIM_ATTEMPTS):
            state = await self._allocations.state(call_id)
            if state.current is not None and state.current.server_id not in exclude:
                return state.current
            candidates = [c for c in state.candidates if c.server.server_id not in exclude]
            choice = choose_two_random(candidates, self._rng)
            bound = await self._allocations.claim(call_id, choice.server, exclude)
            if bound is not None:
                return bound
        raise Unavailable(
            "the MediaServers changed while allocating; try again",
            metadata={"backend": "MediaServer"},
            retry_after=0.1,
        )

    async def release_media_server(self, call_id: str) -> None:
        """End the call's allocation (idempotent)."""
        _require_id("call_id", call_id)
        await self._allocations.release(call_id)
