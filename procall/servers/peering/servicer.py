"""PeerService: the receiving end of the streams between UCServers (thin), and of the
unary calls that move users (``MoveUsers``, ``AcceptSessions``, ``SetDraining``), which
it hands to a ``MoveHandler`` (``procall.servers.moves.endpoint``).

Each delivery is applied at most once per sending run: a sender that
reconnects resends what was not acked, and the receiver skips sequence numbers
it has already applied for that (server, epoch). Deliveries come one per
message or, when this server's hello offered ``PEER_FEATURE_DELIVERY_BATCH``,
several per ``DeliveryBatch``; acks are cumulative and sent once per
``ACK_EVERY`` deliveries. A hello from a server that the mesh does not know yet
is reported (``on_hello``) so that the mesh opens its own stream back at once.

Only a UCServer may open a stream, and only under its own id: the hello's
``server_id`` must be the id its certificate (or plain-mode proof) names, so a
server cannot forge events as another. The shared credential of plain mode is
never sent: callers prove they hold it (``procall.servers.runtime.identity``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Protocol

import grpc
from opentelemetry.trace import SpanKind

from procall.api.session.v1 import session_pb2
from procall.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unimplemented
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers.runtime.auth import current_service
from procall.telemetry.tracing import event_span, tracing_enabled

__all__ = ["ACK_EVERY", "FEATURES", "DeliverySink", "MoveHandler", "PeerServicer"]

#: Deliveries per cumulative ack (a sender resends at most about this many after a reconnect).
ACK_EVERY = 128

#: The optional protocol features this release understands (sent in every hello).
FEATURES = (peer_pb.PEER_FEATURE_DELIVERY_BATCH,)

#: Takes one delivery: (recipients homed here, the event, a session left out or "").
DeliverySink = Callable[[Sequence[str], session_pb2.Event, str], Awaitable[None]]
#: Told of every peer's hello: (server id, the address it serves PeerService on).
HelloObserver = Callable[[str, str], None]


class MoveHandler(Protocol):
    """Serves the move calls of the PeerService (``procall.servers.moves.endpoint``)."""

    async def move_users(self, request: peer_pb.MoveUsersRequest) -> peer_pb.MoveUsersResponse:
        """Hand users' sessions over to another server."""
        ...

    async def accept_sessions(
        self, request: peer_pb.AcceptSessionsRequest
    ) -> peer_pb.AcceptSessionsResponse:
        """Take over sessions from their old home."""
        ...

    async def set_draining(
        self, request: peer_pb.SetDrainingRequest
    ) -> peer_pb.SetDrainingResponse:
        """Start or end draining this server."""
        ...


class PeerServicer(peer_grpc.PeerServiceServicer):
    """Accepts deliveries from other UCServers and hands them to the local sessions."""

    def __init__(
        self,
        server_id: str,
        epoch: int,
        sink: DeliverySink,
        on_hello: HelloObserver | None = None,
        *,
        require_identity: bool = True,
        moves: MoveHandler | None = None,
    ) -> None:
        """``moves`` serves MoveUsers, AcceptSessions and SetDraining (UNIMPLEMENTED
        without it)."""
        self._moves = moves
        self._server_id = server_id
        self._epoch = epoch
        self._require_identity = require_identity
        self._sink = sink
        self._on_hello = on_hello
        self._applied: dict[tuple[str, int], int] = {}

    def _check_caller(self, hello: peer_pb.PeerHello) -> None:
        """The caller must be the UCServer its hello names (unless the mesh is open)."""
        if not self._require_identity:
            return
        caller = current_service()
        if caller is None:
            raise Unauthenticated("peer streams are for procall servers proven by certificate")
        if caller.role != "ucserver" or caller.server_id != hello.server_id:
            raise PermissionDenied(
                f"{caller.role} {caller.server_id} may not open a peer stream "
                f"as {hello.server_id or 'nobody'}"
            )

    async def Exchange(
        self,
        request_iterator: AsyncIterator[peer_pb.ExchangeRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[peer_pb.ExchangeResponse]:
        if self._require_identity and current_service() is None:
            raise Unauthenticated("peer streams are for procall servers proven by certificate")
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("hello"):
            raise InvalidArgument.field("hello", "the first message of a stream must be `hello`")
        self._check_caller(first.hello)
        key = (first.hello.server_id, first.hello.epoch)
        if self._on_hello is not None:
            # before answering: once the caller sees our hello, we know it too
            self._on_hello(first.hello.server_id, first.hello.address)
        yield peer_pb.ExchangeResponse(
            hello=peer_pb.PeerHello(server_id=self._server_id, epoch=self._epoch, features=FEATURES)
        )
        unacked = 0
        async for request in request_iterator:
            deliveries: Iterable[peer_pb.Delivery]
            if request.HasField("delivery_batch"):
                deliveries = request.delivery_batch.deliveries
            elif request.HasField("delivery"):
                deliveries = (request.delivery,)
            else:
                continue
            last = 0
            traced = tracing_enabled()  # once per message: the deliveries below cost nothing
            for delivery in deliveries:
                if delivery.sequence > self._applied.get(key, 0):
                    if traced and delivery.trace_context:
                        await self._apply_traced(delivery)
                    else:
                        await self._sink(
                            list(delivery.recipient_user_ids),
                            delivery.event,
                            delivery.except_session_id,
                        )
                    self._applied[key] = delivery.sequence
                last = delivery.sequence
                unacked += 1
            # acks are cumulative: one per ACK_EVERY deliveries is enough
            if unacked >= ACK_EVERY or (last and last % ACK_EVERY == 0):
                unacked = 0
                yield peer_pb.ExchangeResponse(ack=peer_pb.PeerAck(sequence=last))

    async def _apply_traced(self, delivery: peer_pb.Delivery) -> None:
        """Apply a delivery in a span continuing the sender's, linked to the peer stream;
        the event goes on to the local sessions with this span's context."""
        event = delivery.event
        with event_span(
            "peer receive",
            delivery.trace_context,
            SpanKind.CONSUMER,
            self._server_id,
            restamp=event.trace_context,
        ):
            await self._sink(list(delivery.recipient_user_ids), event, delivery.except_session_id)

    def _mover(self) -> MoveHandler:
        if self._require_identity and current_service() is None:
            raise Unauthenticated("moves are for procall servers proven by certificate")
        if self._moves is None:
            raise Unimplemented("this UCServer does not move users")
        return self._moves

    async def MoveUsers(
        self, request: peer_pb.MoveUsersRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> peer_pb.MoveUsersResponse:
        return await self._mover().move_users(request)

    async def AcceptSessions(
        self,
        request: peer_pb.AcceptSessionsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> peer_pb.AcceptSessionsResponse:
        return await self._mover().accept_sessions(request)

    async def SetDraining(
        self,
        request: peer_pb.SetDrainingRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> peer_pb.SetDrainingResponse:
        return await self._mover().set_draining(request)
