"""The unary PeerService calls of moves: to a user's old home (MoveUsers), to the new
home (AcceptSessions) and to a server to drain (SetDraining).

Peers are found through the Lookup (live UCServers, their mesh address); one channel
per peer address is kept and proves this server's identity on every call.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from procall.api.session.v1 import session_pb2
from procall.errors import FailedPrecondition
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers.runtime.channels import MeshChannels
from procall.servers.upstream.clients import UpstreamClients
from procall.servers.upstream.errors import domain_error
from procall.session.events import SequencedEvent
from procall.session.moves import HandOver

__all__ = ["PeerCalls", "handover_from_proto", "handover_to_proto"]

Payload = session_pb2.Event
#: Bytes of handed-over sessions per AcceptSessions request (servers take 4 MiB messages).
_REQUEST_BYTES = 1024 * 1024


def handover_to_proto(handover: HandOver[Payload]) -> peer_pb.SessionHandOver:
    """The wire form of a handed-over session (events carry their sequence and time)."""
    events = []
    for event in handover.events:
        message = session_pb2.Event()
        message.CopyFrom(event.payload)
        message.sequence = event.sequence
        message.event_time.FromNanoseconds(int(event.time * 1e9))
        events.append(message)
    return peer_pb.SessionHandOver(
        session_token=handover.token,
        client_name=handover.client_name,
        acked_sequence=handover.acked,
        last_sequence=handover.last,
        events=events,
        resume_run_ids=sorted(handover.resume_runs),
    )


def handover_from_proto(message: peer_pb.SessionHandOver) -> HandOver[Payload]:
    """A handed-over session from its wire form (the payloads keep no metadata)."""
    events = []
    for event in message.events:
        payload = session_pb2.Event()
        payload.CopyFrom(event)
        for name in ("sequence", "event_time", "resume_token"):
            payload.ClearField(name)
        at = event.event_time.ToNanoseconds() / 1e9
        events.append(SequencedEvent(event.sequence, at, payload))
    return HandOver(
        message.session_token,
        message.client_name,
        message.acked_sequence,
        message.last_sequence,
        events,
        frozenset(message.resume_run_ids),
    )


class PeerCalls:
    """Unary calls to other UCServers by server id (``HandOverPeer`` port)."""

    def __init__(
        self, channels: MeshChannels, clients: UpstreamClients, timeout: float = 15.0
    ) -> None:
        self._channels = channels
        self._clients = clients
        self._timeout = timeout
        self._open: dict[tuple[str, str], grpc.aio.Channel] = {}

    async def ucservers(self) -> dict[str, lookup_pb2.ServerInfo]:
        """The live UCServers by id."""
        servers = await self._clients.locator.servers(lookup_pb2.ROLE_UCSERVER)
        return {s.server_id: s for s in servers}

    async def _stub(self, server_id: str) -> peer_grpc.PeerServiceAsyncStub:
        server = (await self.ucservers()).get(server_id)
        if server is None:
            raise FailedPrecondition(
                f"UCServer {server_id} is not live", metadata={"server_id": server_id}
            )
        address = server.mesh_address or server.address
        channel = self._open.get((server_id, address))
        if channel is None:
            channel = self._channels.channel(address, server_id)
            self._open[(server_id, address)] = channel
        return peer_grpc.PeerServiceStub(channel)

    async def accept(self, server_id: str, sessions: Sequence[HandOver[Payload]]) -> int:
        """Hand ``sessions`` over to ``server_id``, in requests of at most about
        ``_REQUEST_BYTES`` (a session's buffered events can be many)."""
        stub = await self._stub(server_id)
        requests: list[peer_pb.AcceptSessionsRequest] = [peer_pb.AcceptSessionsRequest()]
        size = 0
        for handover in sessions:
            message = handover_to_proto(handover)
            if size and size + message.ByteSize() > _REQUEST_BYTES:
                requests.append(peer_pb.AcceptSessionsRequest())
                size = 0
            requests[-1].sessions.append(message)
            size += message.ByteSize()
        accepted = 0
        for request in requests:
            try:
                reply = await stub.AcceptSessions(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                raise domain_error(error, f"UCServer {server_id}") from None
            accepted += reply.accepted
        return accepted

    async def move_users(
        self, home_id: str, user_ids: Sequence[str], target_id: str, target_address: str
    ) -> int:
        """Ask the users' home ``home_id`` to hand them over to ``target_id``."""
        stub = await self._stub(home_id)
        request = peer_pb.MoveUsersRequest(
            user_ids=list(user_ids), target_server_id=target_id, target_address=target_address
        )
        try:
            reply = await stub.MoveUsers(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, f"UCServer {home_id}") from None
        return reply.redirected_sessions

    async def set_draining(self, server_id: str, draining: bool) -> int:
        """Start (or end) draining ``server_id``; how many users had sessions there."""
        stub = await self._stub(server_id)
        try:
            reply = await stub.SetDraining(
                peer_pb.SetDrainingRequest(draining=draining), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, f"UCServer {server_id}") from None
        return reply.local_users

    async def close(self) -> None:
        """Close the channels."""
        for channel in self._open.values():
            await channel.close()
        self._open.clear()
