"""Re-homing at login: a user whose home UCServer is dead or draining gets a live one.

The reference product leaves such users unable to log in until their server is back;
procall spreads them over the live UCServers by load instead, and the new home
sticks (Directory and the shared home map), so the user's next logins and every
server's routing agree. The choice is "two random choices" on sessions per
capacity, counting the users this server placed since the last heartbeats, so that
a crowd of users of one dead server logging in at once does not all land on the
server that looked emptiest a second ago.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from procall.errors import ProcallError
from procall.mesh.lookup.v1 import lookup_pb2
from procall.servers.moves.peers import PeerCalls
from procall.servers.upstream.directory import DirectoryClient
from procall.storage.redis.homes import RedisHomeStore

__all__ = ["LiveHomes"]

#: Seconds the list of live UCServers is reused between logins.
_CACHE_SECONDS = 1.0


class LiveHomes:
    """``procall.session.ports.Rehoming`` over the Lookup, the Directory and the home map."""

    def __init__(
        self,
        peers: PeerCalls,
        directory: DirectoryClient | None,
        homes: RedisHomeStore,
        *,
        forget_home: Callable[[str], None] = lambda user_id: None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._peers = peers
        self._directory = directory
        self._homes = homes
        self._forget = forget_home
        self._rng = rng or random.Random()
        self._clock = clock
        self._servers: dict[str, lookup_pb2.ServerInfo] = {}
        self._fetched = -_CACHE_SECONDS
        #: Users placed on each server since the list was fetched.
        self._placed: dict[str, int] = {}

    async def _live(self) -> dict[str, lookup_pb2.ServerInfo]:
        now = self._clock()
        if now - self._fetched >= _CACHE_SECONDS:
            self._servers = await self._peers.ucservers()
            self._fetched = now
            self._placed.clear()
        return self._servers

    def _load(self, server: lookup_pb2.ServerInfo) -> float:
        load = server.load + self._placed.get(server.server_id, 0)
        return load / server.capacity if server.capacity else float(load)

    async def live_home(self, user_id: str, username: str, home_server_id: str) -> str:
        """The user's home if it is live and takes sessions, else a new one (assigned)."""
        try:
            servers = await self._live()
        except ProcallError:
            return home_server_id  # the Lookup cannot tell: keep the home (login says why)
        current = servers.get(home_server_id)
        if current is not None and not current.draining:
            return home_server_id
        open_ = [s for s in servers.values() if not s.draining]
        if not open_ or self._directory is None:
            return home_server_id
        picks = self._rng.sample(open_, min(2, len(open_)))
        chosen = min(picks, key=lambda s: (self._load(s), s.server_id))
        await self._directory.set_home_servers({user_id: chosen.server_id})
        await self._homes.set_home(user_id, username, chosen.server_id)
        await self._homes.announce_moved([user_id])
        self._forget(user_id)
        self._placed[chosen.server_id] = self._placed.get(chosen.server_id, 0) + 1
        return chosen.server_id
