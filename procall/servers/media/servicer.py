"""The MediaService servicer (thin: decode -> ``procall.media.Bridges`` -> encode).

Only procall UCServers call it; the policy enforcer has authenticated the caller before a
method runs (``procall.servers.runtime.policy``).
"""

from __future__ import annotations

from typing import Any

from procall.media.bridges import Bridges
from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.servers.codecs.media import bridge_to_proto, leg_to_proto

__all__ = ["MediaServicer"]


class MediaServicer(media_grpc.MediaServiceServicer):
    """``procall.mesh.media.v1.MediaService`` over a :class:`Bridges` registry."""

    def __init__(self, bridges: Bridges) -> None:
        self._bridges = bridges

    async def CreateLeg(
        self, request: media_pb.CreateLegRequest, context: Any
    ) -> media_pb.CreateLegResponse:
        """A leg from the client's SDP offer (its bridge made if new, the user's old leg there
        replaced), and the SDP answer."""
        leg, answer = await self._bridges.create_leg(
            request.bridge_id, request.user_id, request.sdp_offer
        )
        return media_pb.CreateLegResponse(leg=leg_to_proto(leg), sdp_answer=answer)

    async def DeleteLeg(
        self, request: media_pb.DeleteLegRequest, context: Any
    ) -> media_pb.DeleteLegResponse:
        """Hang up a leg (its two-party bridge ends with it)."""
        await self._bridges.delete_leg(request.leg_id)
        return media_pb.DeleteLegResponse()

    async def GetBridge(
        self, request: media_pb.GetBridgeRequest, context: Any
    ) -> media_pb.GetBridgeResponse:
        """A bridge with its legs."""
        bridge = self._bridges.get_bridge(request.bridge_id)
        return media_pb.GetBridgeResponse(bridge=bridge_to_proto(bridge))

    async def DeleteBridge(
        self, request: media_pb.DeleteBridgeRequest, context: Any
    ) -> media_pb.DeleteBridgeResponse:
        """Close a bridge and its legs."""
        await self._bridges.delete_bridge(request.bridge_id)
        return media_pb.DeleteBridgeResponse()

    async def GetLoad(
        self, request: media_pb.GetLoadRequest, context: Any
    ) -> media_pb.GetLoadResponse:
        """Open bridges (with their ids) and legs, and the declared capacity."""
        load = self._bridges.load()
        return media_pb.GetLoadResponse(
            bridges=load.bridges,
            legs=load.legs,
            capacity=max(0, load.capacity),
            bridge_ids=self._bridges.bridge_ids(),
        )
