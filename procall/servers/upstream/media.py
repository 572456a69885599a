"""The MediaServers as seen by a UCServer: allocation through the Lookup, legs over gRPC
(the ``MediaServers`` port of the call use cases)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from procall.calls.ports import MediaAllocation
from procall.errors import NotFound, Unavailable
from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.servers.runtime.channels import MeshChannels
from procall.servers.upstream.errors import domain_error
from procall.servers.upstream.lookup import LookupClient

__all__ = ["MediaClient"]

_log = logging.getLogger(__name__)
_Stub = tuple[grpc.aio.Channel, "media_grpc.MediaServiceAsyncStub"]
#: Seconds a leg may take to be created (ICE gathering on the MediaServer included).
_LEG_TIMEOUT = 10.0
_TIMEOUT = 3.0
#: Seconds a MediaServer may take to answer a probe.
_PROBE_TIMEOUT = 1.0


class MediaClient:
    """Creates and ends calls' media on the MediaServer the Lookup chose."""

    def __init__(self, lookup: LookupClient | None, channels: MeshChannels) -> None:
        self._lookup = lookup
        self._channels = channels
        self._stubs: dict[tuple[str, str], _Stub] = {}

    def _stub(self, media: MediaAllocation) -> media_grpc.MediaServiceAsyncStub:
        key = (media.server_id, media.address)
        found = self._stubs.get(key)
        if found is None:
            channel = self._channels.channel(media.address, media.server_id)
            found = (channel, media_grpc.MediaServiceStub(channel))
            self._stubs[key] = found
        return found[1]

    async def allocate(self, call_id: str, exclude: Sequence[str] = ()) -> MediaAllocation:
        """The call's MediaServer, chosen by the Lookup."""
        if self._lookup is None:
            raise Unavailable(
                "no Lookup is configured: no MediaServer can be found", reason="MEDIA_UNAVAILABLE"
            )
        server = await self._lookup.allocate_media(call_id, exclude)
        return MediaAllocation(server.server_id, server.mesh_address or server.address)

    async def negotiate(
        self, media: MediaAllocation, call_id: str, user_id: str, sdp_offer: str
    ) -> str:
        """The user's leg on the call's bridge; the MediaServer's SDP answer."""
        request = media_pb.CreateLegRequest(bridge_id=call_id, user_id=user_id, sdp_offer=sdp_offer)
        try:
            reply = await self._stub(media).CreateLeg(request, timeout=_LEG_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    f"MediaServer {media.server_id} does not answer", reason="MEDIA_UNAVAILABLE",
                    metadata={"media_server_id": media.server_id}, retry_after=1.0,
                ) from None  # fmt: skip
            raise domain_error(error, f"MediaServer {media.server_id}") from None
        return reply.sdp_answer

    async def bridges(self, media: MediaAllocation) -> frozenset[str] | None:
        """The MediaServer's open bridges (GetLoad within the probe timeout); None when it
        does not answer."""
        try:
            reply = await self._stub(media).GetLoad(
                media_pb.GetLoadRequest(), timeout=_PROBE_TIMEOUT
            )
        except grpc.aio.AioRpcError:
            return None
        return frozenset(reply.bridge_ids)

    async def release(self, call_id: str, media: MediaAllocation) -> None:
        """Close the call's bridge and end its allocation (best effort: a MediaServer that
        is gone has closed its bridges already)."""
        if media.address:
            try:
                await self._stub(media).DeleteBridge(
                    media_pb.DeleteBridgeRequest(bridge_id=call_id), timeout=_TIMEOUT
                )
            except grpc.aio.AioRpcError as error:
                mapped = domain_error(error, f"MediaServer {media.server_id}")
                if not isinstance(mapped, NotFound):  # no leg was ever made: nothing to close
                    _log.info("bridge of call %s not closed: %s", call_id, mapped.message)
        if self._lookup is not None:
            await self._lookup.release_media(call_id)

    async def close(self) -> None:
        """Close the channels to the MediaServers."""
        for channel, _ in self._stubs.values():
            await channel.close()
        self._stubs.clear()
