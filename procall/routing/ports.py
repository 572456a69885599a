"""The ports of the routing domain: what it needs from stores and from other services.

Implementations: ``procall.storage.redis`` (registry, allocations, home cache),
``procall.servers.lookup.servicer`` (the Directory over gRPC) and
``procall.servers.upstream.registration`` (the Lookup over gRPC, for the registrar).
Every method raises ``procall.errors`` exceptions only (``Unavailable`` naming the
backend when it cannot be reached).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from procall.routing.models import HeartbeatAck, HomeAssignment, ServerInfo
from procall.routing.selection import Candidate
from procall.routing.topology import TopologyObservation

__all__ = [
    "AllocationState",
    "HomeDirectory",
    "HomeStore",
    "LookupPort",
    "MediaAllocations",
    "ServerRegistry",
]


class ServerRegistry(Protocol):
    """The shared registry of live servers (entries that lapse after a TTL)."""

    async def heartbeat(self, server: ServerInfo, ttl: float) -> int:
        """Register or renew ``server`` for ``ttl`` seconds; return its epoch.

        ``server.epoch == 0`` starts a new run with a new, larger epoch. A heartbeat
        of an epoch older than the newest one seen for the server (or of a run that
        deregistered) changes nothing and raises ``Aborted`` (``STALE_VERSION``).
        """
        ...

    async def deregister(self, server_id: str, epoch: int) -> bool:
        """Remove the registration of run ``epoch``; ``False`` if a newer run owns it."""
        ...

    async def live_servers(self) -> list[ServerInfo]:
        """Every live server."""
        ...

    async def last_known(self, server_id: str) -> tuple[ServerInfo | None, bool]:
        """The server's current (or last known) info, and whether it is live."""
        ...

    def watch(self) -> AsyncGenerator[TopologyObservation, None]:
        """A listing of the live servers, then each server's changes as they happen.

        A fresh listing may be yielded again at any time (after a gap in the
        notifications); the feed ends by raising ``Unavailable``.
        """
        ...

    async def sweep(self) -> int:
        """Retire entries whose TTL passed, announcing each departure once; how many."""
        ...


@dataclass(frozen=True)
class AllocationState:
    """A call's current MediaServer (if it is still live) and the live MediaServers."""

    current: ServerInfo | None
    candidates: tuple[Candidate, ...]


class MediaAllocations(Protocol):
    """Which MediaServer each call uses."""

    async def state(self, call_id: str) -> AllocationState:
        """The call's live allocation, if any, and the candidates for a new one."""
        ...

    async def claim(
        self, call_id: str, server: ServerInfo, exclude: Sequence[str] = ()
    ) -> ServerInfo | None:
        """Bind the call to ``server`` unless it is bound to another live server already
        (one named in ``exclude`` does not count).

        Returns the server the call is bound to afterwards, or ``None`` when
        ``server`` (that run of it) is no longer live or is draining.
        """
        ...

    async def release(self, call_id: str) -> None:
        """Forget the call's allocation (idempotent)."""
        ...


class HomeStore(Protocol):
    """The shared user -> home server map (and its cache of Directory answers)."""

    async def find_home(self, *, user_id: str = "", username: str = "") -> HomeAssignment | None:
        """The user's home by id or username, or ``None`` when the map does not know it."""
        ...

    async def cache_home(self, home: HomeAssignment, ttl: float) -> None:
        """Remember an answer of the Directory for ``ttl`` seconds (never overrides an
        assignment written with ``set_home``)."""
        ...


class HomeDirectory(Protocol):
    """The Directory, the owner of home-server assignments."""

    async def find_home(self, *, user_id: str = "", username: str = "") -> HomeAssignment | None:
        """The user's assignment (``server_id`` empty when none), ``None`` for an unknown user."""
        ...


class LookupPort(Protocol):
    """The Lookup as a registering server sees it."""

    async def heartbeat(self, server: ServerInfo) -> HeartbeatAck:
        """Send one heartbeat; raises ``Aborted`` when the epoch is stale (fenced)."""
        ...

    async def deregister(self, server_id: str, epoch: int) -> None:
        """Remove the registration of this run."""
        ...
