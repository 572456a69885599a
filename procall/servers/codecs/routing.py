"""Routing: ``procall.mesh.lookup.v1`` messages <-> the routing models."""

from __future__ import annotations

from procall.errors import InvalidArgument
from procall.mesh.lookup.v1 import lookup_pb2
from procall.routing.models import ChangeKind, DependencyHealth, ServerInfo, ServerRole
from procall.servers.codecs.time import seconds_or_none, timestamp_of

__all__ = [
    "CHANGE_KINDS",
    "role_from_proto",
    "role_to_proto",
    "server_from_proto",
    "server_to_proto",
]

_ROLE_PREFIX = "ROLE_"
CHANGE_KINDS: dict[ChangeKind, lookup_pb2.TopologyChangeKind.ValueType] = {
    ChangeKind.JOINED: lookup_pb2.TOPOLOGY_CHANGE_KIND_JOINED,
    ChangeKind.UPDATED: lookup_pb2.TOPOLOGY_CHANGE_KIND_UPDATED,
    ChangeKind.LEFT: lookup_pb2.TOPOLOGY_CHANGE_KIND_LEFT,
}


def role_to_proto(role: ServerRole) -> lookup_pb2.Role.ValueType:
    """The ``Role`` enum value of a role."""
    return lookup_pb2.Role.Value(_ROLE_PREFIX + role.value)


def role_from_proto(value: lookup_pb2.Role.ValueType, field: str = "role") -> ServerRole | None:
    """The role of a ``Role`` value; ``None`` for ROLE_UNSPECIFIED.

    Raises ``InvalidArgument`` naming ``field`` for a value the contract does not define.
    """
    if value == lookup_pb2.ROLE_UNSPECIFIED:
        return None
    try:
        return ServerRole(lookup_pb2.Role.Name(value).removeprefix(_ROLE_PREFIX))
    except ValueError:
        raise InvalidArgument.field(field, f"unknown role {value}") from None


def server_to_proto(server: ServerInfo) -> lookup_pb2.ServerInfo:
    """A routing ``ServerInfo`` as the contract's message."""
    return lookup_pb2.ServerInfo(
        server_id=server.server_id,
        role=role_to_proto(server.role),
        address=server.address,
        epoch=server.epoch,
        capacity=server.capacity,
        load=server.load,
        draining=server.draining,
        degraded=server.degraded,
        start_time=timestamp_of(server.start_time),
        heartbeat_time=timestamp_of(server.heartbeat_time),
        version=server.version,
        outbox_depth=server.outbox_depth,
        mesh_address=server.mesh_address,
        legs=server.legs,
        cpu_percent=server.cpu_percent,
        dependencies=[
            lookup_pb2.DependencyHealth(name=d.name, available=d.available, detail=d.detail)
            for d in server.dependencies
        ],
    )


def server_from_proto(message: lookup_pb2.ServerInfo, field: str = "server") -> ServerInfo:
    """The contract's message as a routing ``ServerInfo``; its role is required."""
    role = role_from_proto(message.role, f"{field}.role")
    if role is None:
        raise InvalidArgument.field(f"{field}.role", "is required")
    return ServerInfo(
        server_id=message.server_id,
        role=role,
        address=message.address,
        epoch=message.epoch,
        capacity=message.capacity,
        load=message.load,
        draining=message.draining,
        degraded=message.degraded,
        start_time=seconds_or_none(
            message.start_time, message.HasField("start_time"), "start_time"
        ),
        heartbeat_time=seconds_or_none(
            message.heartbeat_time, message.HasField("heartbeat_time"), "heartbeat_time"
        ),
        version=message.version,
        outbox_depth=message.outbox_depth,
        mesh_address=message.mesh_address,
        legs=message.legs,
        cpu_percent=message.cpu_percent,
        dependencies=tuple(
            DependencyHealth(d.name, d.available, d.detail) for d in message.dependencies
        ),
    )
