"""PeerService: the receiving end of the streams between UCServers (thin).

Each delivery is applied at most once per sending run: a sender that
reconnects resends what was not acked, and the receiver skips sequence numbers
it has already applied for that (server, epoch).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc

from procall.api.session.v1 import session_pb2
from procall.errors import InvalidArgument, Unauthenticated
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc

__all__ = ["CREDENTIAL_HEADER", "DeliverySink", "PeerServicer"]

#: Metadata key carrying the shared service credential between servers.
CREDENTIAL_HEADER = "x-procall-service-credential"

#: Deliveries per cumulative ack (a sender resends at most this many after a reconnect).
ACK_EVERY = 32

DeliverySink = Callable[[Sequence[str], session_pb2.Event], Awaitable[None]]


class PeerServicer(peer_grpc.PeerServiceServicer):
    """Accepts deliveries from other UCServers and hands them to the local sessions."""

    def __init__(self, server_id: str, epoch: int, credential: str, sink: DeliverySink) -> None:
        self._server_id = server_id
        self._epoch = epoch
        self._credential = credential
        self._sink = sink
        self._applied: dict[tuple[str, int], int] = {}

    def _check_credential(self, context: grpc.aio.ServicerContext[object, object]) -> None:
        if not self._credential:
            return
        for key, value in context.invocation_metadata() or ():
            if key == CREDENTIAL_HEADER and isinstance(value, str):
                if hmac.compare_digest(value, self._credential):
                    return
        raise Unauthenticated("peer streams need the service credential of this system")

    async def Exchange(
        self,
        request_iterator: AsyncIterator[peer_pb.ExchangeRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[peer_pb.ExchangeResponse]:
        self._check_credential(context)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("hello"):
            raise InvalidArgument.field("hello", "the first message of a stream must be `hello`")
        key = (first.hello.server_id, first.hello.epoch)
        yield peer_pb.ExchangeResponse(
            hello=peer_pb.PeerHello(server_id=self._server_id, epoch=self._epoch)
        )
        unacked = 0
        async for request in request_iterator:
            if not request.HasField("delivery"):
                continue
            delivery = request.delivery
            if delivery.sequence > self._applied.get(key, 0):
                await self._sink(list(delivery.recipient_user_ids), delivery.event)
                self._applied[key] = delivery.sequence
            unacked += 1
            # acks are cumulative: one per batch of deliveries is enough
            if unacked >= ACK_EVERY or delivery.sequence % ACK_EVERY == 0:
                unacked = 0
                yield peer_pb.ExchangeResponse(ack=peer_pb.PeerAck(sequence=delivery.sequence))
