"""The LookupService servicer (thin: decode -> ``RoutingService`` -> encode).

Also here: the conversions between ``procall.mesh.lookup.v1`` messages and the
routing models (shared with the registrar's client in ``registration``), and
``GrpcHomeDirectory``, the Directory as the Lookup asks it for home servers.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.errors import InvalidArgument, Unavailable
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.routing.models import ChangeKind, HomeAssignment, ServerInfo, ServerRole
from procall.routing.service import RoutingService

__all__ = [
    "GrpcHomeDirectory",
    "LookupServicer",
    "role_from_proto",
    "role_to_proto",
    "server_from_proto",
    "server_to_proto",
]

_ROLE_PREFIX = "ROLE_"
_KINDS: dict[ChangeKind, lookup_pb2.TopologyChangeKind.ValueType] = {
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


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _datetime(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


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
        start_time=_timestamp(server.start_time),
        heartbeat_time=_timestamp(server.heartbeat_time),
        version=server.version,
        outbox_depth=server.outbox_depth,
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
        start_time=_datetime(message, "start_time"),
        heartbeat_time=_datetime(message, "heartbeat_time"),
        version=message.version,
        outbox_depth=message.outbox_depth,
    )


class LookupServicer(lookup_grpc.LookupServiceServicer):
    """``procall.mesh.lookup.v1.LookupService`` over a ``RoutingService``."""

    def __init__(self, service: RoutingService) -> None:
        self._service = service

    async def Heartbeat(
        self, request: lookup_pb.HeartbeatRequest, context: Any
    ) -> lookup_pb.HeartbeatResponse:
        """Register or renew a server; epoch 0 starts a new run."""
        if not request.HasField("server"):
            raise InvalidArgument.field("server", "is required")
        ack = await self._service.heartbeat(server_from_proto(request.server))
        return lookup_pb.HeartbeatResponse(
            epoch=ack.epoch, ttl_seconds=max(1, math.ceil(ack.ttl_seconds))
        )

    async def Deregister(
        self, request: lookup_pb.DeregisterRequest, context: Any
    ) -> lookup_pb.DeregisterResponse:
        """Remove a run's registration at once."""
        await self._service.deregister(request.server_id, request.epoch)
        return lookup_pb.DeregisterResponse()

    async def ListServers(
        self, request: lookup_pb.ListServersRequest, context: Any
    ) -> lookup_pb.ListServersResponse:
        """The live servers, optionally of one role."""
        servers = await self._service.list_servers(role_from_proto(request.role))
        return lookup_pb.ListServersResponse(servers=[server_to_proto(s) for s in servers])

    async def WatchTopology(
        self, request: lookup_pb.WatchTopologyRequest, context: Any
    ) -> AsyncIterator[lookup_pb.WatchTopologyResponse]:
        """Every live server as JOINED, then each change."""
        async for change in self._service.watch(role_from_proto(request.role)):
            yield lookup_pb.WatchTopologyResponse(
                change=lookup_pb2.TopologyChange(
                    kind=_KINDS[change.kind],
                    server=server_to_proto(change.server),
                )
            )

    async def ResolveHome(
        self, request: lookup_pb.ResolveHomeRequest, context: Any
    ) -> lookup_pb.ResolveHomeResponse:
        """A user's home UCServer and whether it is live."""
        home = await self._service.resolve_home(user_id=request.user_id, username=request.username)
        return lookup_pb.ResolveHomeResponse(
            user_id=home.user_id, server=server_to_proto(home.server), live=home.live
        )

    async def AllocateMediaServer(
        self, request: lookup_pb.AllocateMediaServerRequest, context: Any
    ) -> lookup_pb.AllocateMediaServerResponse:
        """The call's MediaServer (sticky while it is live)."""
        server = await self._service.allocate_media_server(request.call_id)
        return lookup_pb.AllocateMediaServerResponse(server=server_to_proto(server))

    async def ReleaseMediaServer(
        self, request: lookup_pb.ReleaseMediaServerRequest, context: Any
    ) -> lookup_pb.ReleaseMediaServerResponse:
        """End a call's allocation."""
        await self._service.release_media_server(request.call_id)
        return lookup_pb.ReleaseMediaServerResponse()


class GrpcHomeDirectory:
    """The Directory's ``GetUser`` as a ``procall.routing.ports.HomeDirectory``.

    A user the Directory does not know is ``None``; any other failure (down,
    slower than ``timeout``) is ``Unavailable`` naming the Directory.
    """

    def __init__(self, address: str, *, timeout: float = 2.0) -> None:
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                # come back within a second of the Directory returning, not minutes
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._stub = directory_grpc.DirectoryServiceStub(self._channel)
        self._timeout = timeout

    async def find_home(self, *, user_id: str = "", username: str = "") -> HomeAssignment | None:
        """The user's home assignment according to the Directory."""
        request = (
            directory_pb.GetUserRequest(user_id=user_id)
            if user_id
            else directory_pb.GetUserRequest(username=username)
        )
        try:
            response = await self._stub.GetUser(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise Unavailable.backend("Directory") from err
        user = response.user
        return HomeAssignment(user.user_id, user.username, user.home_server_id)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
