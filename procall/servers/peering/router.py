"""Delivers session events to users wherever they are homed.

Users with sessions on this UCServer get the event from the local hub; for the
others the event goes over the peer stream to their home server (which delivers
it to whichever sessions they have there). Homes come from the Lookup and are
cached for a while; when a home cannot be found out (Lookup unreachable), the
event goes to every peer, each delivering it only to its own users.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from procall.api.session.v1 import session_pb2
from procall.errors import ProcallError
from procall.servers.peering.links import PeerLinks
from procall.session.hub import SessionHub
from procall.telemetry.tracing import stamp

__all__ = ["EventRouter", "HomeLookup"]

_log = logging.getLogger(__name__)

#: Finds a user's home server id (None: the user has none).
HomeLookup = Callable[[str], Awaitable[str | None]]
_UNKNOWN = ""


class EventRouter:
    """Routes events to the sessions of users, here or on their home server."""

    def __init__(
        self,
        server_id: str,
        hub: SessionHub[session_pb2.Event],
        links: PeerLinks,
        lookup: HomeLookup,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._server_id = server_id
        self._hub = hub
        self._links = links
        self._lookup = lookup
        self._ttl = cache_seconds
        self._clock = clock
        self._homes: dict[str, tuple[str | None, float]] = {}

    async def route(
        self, user_ids: Iterable[str], event: session_pb2.Event, except_session: str = ""
    ) -> None:
        """Deliver ``event`` to every session of each user, once, but ``except_session``
        (wherever it lives)."""
        # the trace of the action that caused the event goes with it (nothing when off)
        stamp(event.trace_context)
        local: list[str] = []
        remote: list[str] = []
        for user_id in dict.fromkeys(user_ids):
            # a user moved away just now is "local" too: the hub forwards to the new home
            (local if self._hub.hosts(user_id) else remote).append(user_id)
        homes = await asyncio.gather(*(self._home(u) for u in remote)) if remote else []
        by_server: dict[str, list[str]] = {}
        for user_id, home in zip(remote, homes, strict=True):
            if home is None or home == self._server_id:
                continue  # no home, or homed here and not logged on: nothing to deliver
            by_server.setdefault(home, []).append(user_id)
        if local:
            await self._hub.deliver(local, event, except_session)
        unknown = by_server.pop(_UNKNOWN, [])
        for server_id, users in by_server.items():
            if not self._links.send(server_id, users, event, except_session):
                unknown.extend(users)  # the home is not a live peer (yet): try every peer
        if unknown:
            for server_id in self._links.peer_ids():
                self._links.send(server_id, unknown, event, except_session)

    async def _home(self, user_id: str) -> str | None:
        now = self._clock()
        cached = self._homes.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            home = await self._lookup(user_id)
        except ProcallError as error:
            _log.debug("home of %s unknown (%s): sending to every peer", user_id, error.message)
            return _UNKNOWN
        if len(self._homes) > 100_000:
            self._homes.clear()
        self._homes[user_id] = (home, now + self._ttl)
        return home

    def cached_home(self, user_id: str) -> str | None:
        """The home cached for ``user_id`` (None when none is cached)."""
        cached = self._homes.get(user_id)
        return cached[0] if cached is not None and cached[1] > self._clock() else None

    def forget(self, user_id: str) -> None:
        """Drop a cached home (after the user was moved to another server)."""
        self._homes.pop(user_id, None)
