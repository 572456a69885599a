"""Peer streams over real gRPC: every delivery arrives once and in order, in batches to
servers of this release and one by one to servers that do not know batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest

from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers.peering.links import PeerLink
from procall.servers.peering.servicer import PeerServicer
from procall.servers.runtime.channels import MeshChannels
from procall.servers.runtime.identity import ServiceAuthenticator, ServiceIdentityInterceptor
from procall.settings import Settings
from tests.helpers.topology import wait_for

CREDENTIAL = "service-secret"


def _event(note: str) -> session_pb2.Event:
    return session_pb2.Event(
        presence_changed=presence_pb2.PresenceChanged(
            presence=presence_pb2.Presence(user_id="u1", note=note)
        )
    )


class _OlderPeer(peer_grpc.PeerServiceServicer):
    """A server of an earlier release: no features in its hello, knows single deliveries."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.ignored = 0

    async def Exchange(
        self,
        request_iterator: AsyncIterator[peer_pb.ExchangeRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[peer_pb.ExchangeResponse]:
        await anext(aiter(request_iterator))
        yield peer_pb.ExchangeResponse(hello=peer_pb.PeerHello(server_id="old", epoch=1))
        async for request in request_iterator:
            if not request.HasField("delivery"):
                self.ignored += 1  # what an older release does with a message it cannot read
                continue
            self.notes.append(request.delivery.event.presence_changed.presence.note)
            if request.delivery.sequence % 32 == 0:
                yield peer_pb.ExchangeResponse(
                    ack=peer_pb.PeerAck(sequence=request.delivery.sequence)
                )


def _channels(server_id: str) -> MeshChannels:
    settings = Settings()
    settings.auth.service_credential = CREDENTIAL
    return MeshChannels(settings, "ucserver", server_id)


async def _serve(servicer: peer_grpc.PeerServiceServicer) -> tuple[grpc.aio.Server, str]:
    proving = ServiceAuthenticator(
        role="ucserver", server_id="uc-2", tls=False, credential=CREDENTIAL
    )
    server = grpc.aio.server(interceptors=[ServiceIdentityInterceptor(proving)])
    peer_grpc.add_PeerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("older", [False, True], ids=["this-release", "older-release"])
async def test_a_burst_arrives_once_and_in_order(older: bool) -> None:
    received: list[str] = []
    hellos: list[tuple[str, str]] = []

    async def sink(
        recipients: Sequence[str], event: session_pb2.Event, except_session: str = ""
    ) -> None:
        received.append(event.presence_changed.presence.note)

    old = _OlderPeer()
    servicer = (
        old if older else PeerServicer("uc-2", 7, sink, on_hello=lambda s, a: hellos.append((s, a)))
    )
    server, address = await _serve(servicer)
    link = PeerLink("uc-1", 1, "uc-2", address, _channels("uc-1"), own_address=lambda: "10.0.0.1:5")
    notes = [f"n{i}" for i in range(500)]
    try:
        for note in notes[:250]:  # queued before the stream even exists
            link.send(["u9"], _event(note))
        link.start()
        await asyncio.wait_for(link.wait_connected(), 5)
        for note in notes[250:]:
            link.send(["u9"], _event(note))
        got = old.notes if older else received

        async def all_arrived() -> bool:
            return len(got) >= len(notes)

        await wait_for(all_arrived, timeout=10)
        await asyncio.sleep(0.2)  # nothing more (no duplicates) comes after
        assert got == notes
        if older:
            assert old.ignored == 0
        else:
            assert hellos == [("uc-1", "10.0.0.1:5")]
    finally:
        await link.stop()
        await server.stop(0)
