"""The routing view's values: registered servers, topology changes, home assignments.

Transport-free: the Lookup servicer translates these to and from
``procall.mesh.lookup.v1`` messages, the Redis store to and from JSON.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from procall.clock import UnixTime

__all__ = [
    "BUSY_CPU_PERCENT",
    "MAX_EPOCH",
    "ChangeKind",
    "DependencyHealth",
    "HeartbeatAck",
    "HomeAssignment",
    "ServerInfo",
    "ServerRole",
    "TopologyChange",
    "busy_cpu_share",
]

#: Largest epoch the routing view accepts. Epochs are handled inside Redis Lua scripts,
#: whose numbers are doubles: above 2**53 they would silently lose precision.
MAX_EPOCH = 2**53 - 1


class ServerRole(enum.Enum):
    """What a registered server process does (``procall.mesh.lookup.v1.Role``)."""

    DIRECTORY = "DIRECTORY"
    LOOKUP = "LOOKUP"
    UCSERVER = "UCSERVER"
    MEDIA = "MEDIA"


#: From this CPU share of its core on, a server's CPU counts in its utilization (below it,
#: the few percent an idle server moves up and down would decide between idle servers).
BUSY_CPU_PERCENT = 60


def busy_cpu_share(cpu_percent: int) -> float:
    """The CPU share that counts as utilization: 0 below ``BUSY_CPU_PERCENT``."""
    return cpu_percent / 100 if cpu_percent >= BUSY_CPU_PERCENT else 0.0


@dataclass(frozen=True)
class DependencyHealth:
    """Whether a server reaches one backend it needs, and what it does meanwhile if not."""

    name: str
    available: bool
    detail: str = ""


@dataclass(frozen=True)
class ServerInfo:
    """One server in the routing view.

    ``epoch`` is the fencing number of the server's current run (0 before the
    first heartbeat of a run was answered); ``load`` and ``capacity`` share a
    unit (sessions for UCServers, concurrent calls for MediaServers). Times are
    :data:`procall.clock.UnixTime`, ``None`` when not known.
    """

    server_id: str
    role: ServerRole
    address: str
    epoch: int = 0
    capacity: int = 0
    load: int = 0
    draining: bool = False
    degraded: bool = False
    start_time: UnixTime | None = None
    heartbeat_time: UnixTime | None = None
    version: str = ""
    #: Writes waiting in the server's local outbox for the central database.
    outbox_depth: int = 0
    #: Address other servers dial (the mutual-TLS port); empty when it is ``address``.
    mesh_address: str = ""
    #: Media legs carried (MediaServers).
    legs: int = 0
    #: CPU of the process over the last heartbeat interval, percent of one core (0: not
    #: reported).
    cpu_percent: int = 0
    #: Whether the server reaches each backend it needs.
    dependencies: tuple[DependencyHealth, ...] = ()

    @property
    def utilization(self) -> float:
        """``load / capacity``, or the CPU share of one core when that is higher and the core
        is busy (``BUSY_CPU_PERCENT`` or more); infinite for a server that declares no
        capacity."""
        if self.capacity <= 0:
            return float("inf")
        return max(self.load / self.capacity, busy_cpu_share(self.cpu_percent))

    def same_state(self, other: ServerInfo) -> bool:
        """Whether ``other`` describes the same run in the same state.

        Only the heartbeat time may differ: a heartbeat that changes nothing else
        is not a topology change.
        """
        return replace(self, heartbeat_time=None) == replace(other, heartbeat_time=None)


@dataclass(frozen=True)
class HeartbeatAck:
    """The Lookup's answer to a heartbeat: the run's epoch and how long the entry lives."""

    epoch: int
    ttl_seconds: float


class ChangeKind(enum.Enum):
    """How the set of live servers changed (``TopologyChangeKind``)."""

    JOINED = "JOINED"
    UPDATED = "UPDATED"
    LEFT = "LEFT"


@dataclass(frozen=True)
class TopologyChange:
    """One change of the set of live servers; for ``LEFT``, ``server`` is the last known info."""

    kind: ChangeKind
    server: ServerInfo


@dataclass(frozen=True)
class HomeAssignment:
    """Which UCServer a user is homed on."""

    user_id: str
    username: str
    server_id: str
