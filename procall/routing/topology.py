"""One watcher's view of the live servers, and the changes it reports.

A watcher first sees a full listing, then single-server observations (a server's
new info, or its absence), and now and then a fresh full listing again (after it
may have missed something). ``TopologyView`` turns all of these into the changes
the watcher has not reported yet: a server is reported ``JOINED`` once, then
``UPDATED`` when its state changes, then ``LEFT`` once. Seeing the same fact
twice (from a notification and from a listing) reports nothing the second time,
so duplicates from several sources cannot reach the watcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from procall.routing.models import ChangeKind, ServerInfo, ServerRole, TopologyChange

__all__ = ["Listing", "ServerObserved", "TopologyObservation", "TopologyView"]


@dataclass(frozen=True)
class Listing:
    """All live servers at one moment."""

    servers: tuple[ServerInfo, ...]


@dataclass(frozen=True)
class ServerObserved:
    """One server's current info, or ``None`` when it is no longer live."""

    server_id: str
    server: ServerInfo | None


#: What a topology feed yields.
TopologyObservation = Listing | ServerObserved


class TopologyView:
    """The servers a watcher has been told about, optionally only those of one role."""

    def __init__(self, role: ServerRole | None = None) -> None:
        self._role = role
        self._servers: dict[str, ServerInfo] = {}

    @property
    def servers(self) -> Mapping[str, ServerInfo]:
        """The servers reported live so far, by id."""
        return self._servers

    def observe(self, observation: TopologyObservation) -> list[TopologyChange]:
        """Apply an observation; return the changes not yet reported."""
        if isinstance(observation, Listing):
            return self.reset(observation.servers)
        change = self.apply(observation.server_id, observation.server)
        return [] if change is None else [change]

    def apply(self, server_id: str, server: ServerInfo | None) -> TopologyChange | None:
        """One server's current info (``None``: gone); the change to report, if any."""
        if server is not None and not self._wanted(server):
            server = None
        known = self._servers.get(server_id)
        if server is None:
            if known is None:
                return None
            del self._servers[server_id]
            return TopologyChange(ChangeKind.LEFT, known)
        self._servers[server_id] = server
        if known is None:
            return TopologyChange(ChangeKind.JOINED, server)
        if known.same_state(server):
            return None
        return TopologyChange(ChangeKind.UPDATED, server)

    def reset(self, servers: Iterable[ServerInfo]) -> list[TopologyChange]:
        """Replace the view by a full listing; the differences, departures first."""
        current = {s.server_id: s for s in servers if self._wanted(s)}
        changes: list[TopologyChange] = []
        for server_id in sorted(set(self._servers) - set(current)):
            change = self.apply(server_id, None)
            if change is not None:
                changes.append(change)
        for server_id in sorted(current):
            change = self.apply(server_id, current[server_id])
            if change is not None:
                changes.append(change)
        return changes

    def _wanted(self, server: ServerInfo) -> bool:
        return self._role is None or server.role is self._role
