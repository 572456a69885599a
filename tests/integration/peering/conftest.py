"""Real peer servers for the peer-mesh tests: a ``PeerServicer`` on 127.0.0.1, port 0, that
keeps every delivery it applied."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import pytest

from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers.peering.servicer import PeerServicer
from procall.servers.runtime.channels import MeshChannels
from procall.servers.runtime.identity import ServiceAuthenticator, ServiceIdentityInterceptor
from procall.settings import Settings

CREDENTIAL = "service-secret"


def mesh_channels(server_id: str) -> MeshChannels:
    """The channels of UCServer ``server_id`` (plain mode: a proof on every call)."""
    settings = Settings()
    settings.auth.service_credential = CREDENTIAL
    return MeshChannels(settings, "ucserver", server_id)


def note_event(note: str) -> session_pb2.Event:
    """A presence event told apart by its note."""
    return session_pb2.Event(
        presence_changed=presence_pb2.PresenceChanged(
            presence=presence_pb2.Presence(user_id="u1", note=note)
        )
    )


@dataclass
class Peer:
    """A running peer UCServer's receiving end."""

    server_id: str
    address: str
    server: grpc.aio.Server
    #: (recipients, note) of every delivery applied, in order.
    received: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    hellos: list[tuple[str, str]] = field(default_factory=list)

    def notes(self) -> list[str]:
        """The notes received, in order."""
        return [note for _, note in self.received]


StartPeer = Callable[[str], Awaitable[Peer]]


@pytest.fixture
async def start_peer() -> AsyncIterator[StartPeer]:
    """Starts peer servers (stopped after the test)."""
    started: list[Peer] = []

    async def start(server_id: str) -> Peer:
        proving = ServiceAuthenticator(
            role="ucserver", server_id=server_id, tls=False, credential=CREDENTIAL
        )
        server = grpc.aio.server(interceptors=[ServiceIdentityInterceptor(proving)])
        port = server.add_insecure_port("127.0.0.1:0")
        peer = Peer(server_id, f"127.0.0.1:{port}", server)

        async def sink(
            recipients: Sequence[str], event: session_pb2.Event, except_session: str = ""
        ) -> None:
            peer.received.append((tuple(recipients), event.presence_changed.presence.note))

        servicer = PeerServicer(
            server_id, 1, sink, on_hello=lambda s, a: peer.hellos.append((s, a))
        )
        peer_grpc.add_PeerServiceServicer_to_server(servicer, server)
        await server.start()
        started.append(peer)
        return peer

    yield start
    for peer in started:
        await peer.server.stop(0)
