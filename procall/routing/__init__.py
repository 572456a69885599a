"""Routing: the live servers, users' home servers and media-server allocation.

Domain code only (no gRPC, no Redis): the models, the "two random choices"
selection, a watcher's topology view, the Lookup's use-cases, the registrar
each server runs and the plans of moving users (rebalance, drain). Stores and
transports implement the ports in ``ports``.
"""

from procall.routing.balance import PlannedMove, plan_drain, plan_rebalance
from procall.routing.models import (
    BUSY_CPU_PERCENT,
    MAX_EPOCH,
    ChangeKind,
    DependencyHealth,
    HeartbeatAck,
    HomeAssignment,
    ServerInfo,
    ServerRole,
    TopologyChange,
    busy_cpu_share,
)
from procall.routing.ports import (
    AllocationState,
    HomeDirectory,
    HomeStore,
    LookupPort,
    MediaAllocations,
    ServerRegistry,
)
from procall.routing.registration import CpuGauge, LoadGauge, Registrar, ServerIdentity
from procall.routing.selection import Candidate, choose_two_random
from procall.routing.service import ResolvedHome, RoutingService
from procall.routing.topology import Listing, ServerObserved, TopologyObservation, TopologyView

__all__ = [
    "BUSY_CPU_PERCENT",
    "MAX_EPOCH",
    "AllocationState",
    "Candidate",
    "ChangeKind",
    "HeartbeatAck",
    "HomeAssignment",
    "HomeDirectory",
    "HomeStore",
    "Listing",
    "CpuGauge",
    "DependencyHealth",
    "LoadGauge",
    "LookupPort",
    "MediaAllocations",
    "PlannedMove",
    "Registrar",
    "ResolvedHome",
    "RoutingService",
    "ServerIdentity",
    "ServerInfo",
    "ServerObserved",
    "ServerRegistry",
    "ServerRole",
    "TopologyChange",
    "TopologyObservation",
    "TopologyView",
    "busy_cpu_share",
    "choose_two_random",
    "plan_drain",
    "plan_rebalance",
]
