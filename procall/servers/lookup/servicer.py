"""The LookupService servicer (thin: decode -> ``RoutingService`` -> encode).

A server registers, heartbeats and deregisters only itself: the role and id of
the calling server (its certificate, or its plain-mode proof) must be the ones
in the request. Otherwise anyone reaching the Lookup could take over another
server's routing with a heartbeat at epoch 0, or remove it with the epoch read
from ``ListServers``, whatever the epoch fencing says.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

from procall.errors import InvalidArgument, PermissionDenied, Unauthenticated
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.routing.models import ServerRole
from procall.routing.service import RoutingService
from procall.servers.codecs.routing import (
    CHANGE_KINDS,
    role_from_proto,
    server_from_proto,
    server_to_proto,
)
from procall.servers.runtime.auth import current_service

__all__ = ["LookupServicer"]


class LookupServicer(lookup_grpc.LookupServiceServicer):
    """``procall.mesh.lookup.v1.LookupService`` over a ``RoutingService``."""

    def __init__(self, service: RoutingService, *, require_identity: bool = True) -> None:
        self._service = service
        self._require_identity = require_identity

    def _only_itself(self, server_id: str, role: ServerRole | None) -> None:
        """Refuse unless the calling server is ``server_id`` (of ``role``, when given)."""
        if not self._require_identity:
            return
        caller = current_service()
        if caller is None:
            raise Unauthenticated("only a procall server may register, proven by its certificate")
        roles = (role,) if role is not None else (ServerRole.UCSERVER, ServerRole.MEDIA)
        if caller.server_id != server_id or caller.role not in {r.value.lower() for r in roles}:
            raise PermissionDenied(
                f"{caller.role} {caller.server_id} may register, renew or remove only itself"
            )

    async def Heartbeat(
        self, request: lookup_pb.HeartbeatRequest, context: Any
    ) -> lookup_pb.HeartbeatResponse:
        """Register or renew a server; epoch 0 starts a new run."""
        if not request.HasField("server"):
            raise InvalidArgument.field("server", "is required")
        server = server_from_proto(request.server)
        self._service.check_server(server)  # a malformed request says so, whoever sends it
        self._only_itself(server.server_id, server.role)
        ack = await self._service.heartbeat(server)
        return lookup_pb.HeartbeatResponse(
            epoch=ack.epoch, ttl_seconds=max(1, math.ceil(ack.ttl_seconds))
        )

    async def Deregister(
        self, request: lookup_pb.DeregisterRequest, context: Any
    ) -> lookup_pb.DeregisterResponse:
        """Remove a run's registration at once."""
        self._only_itself(request.server_id, None)
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
                    kind=CHANGE_KINDS[change.kind],
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
        server = await self._service.allocate_media_server(
            request.call_id, list(request.exclude_server_ids)
        )
        return lookup_pb.AllocateMediaServerResponse(server=server_to_proto(server))

    async def ReleaseMediaServer(
        self, request: lookup_pb.ReleaseMediaServerRequest, context: Any
    ) -> lookup_pb.ReleaseMediaServerResponse:
        """End a call's allocation."""
        await self._service.release_media_server(request.call_id)
        return lookup_pb.ReleaseMediaServerResponse()
