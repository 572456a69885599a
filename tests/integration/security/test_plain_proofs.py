"""Plain mode (no TLS): the shared credential never leaves a server, proofs captured by a
fake server are useless elsewhere, and no server registers or speaks as another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from procall.api.chat.v1 import chat_pb2
from procall.api.session.v1 import session_pb2
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.servers.peering.links import PeerLinks
from procall.servers.runtime.identity import PROOF_HEADER, ProofSigner, role_target
from tests.helpers.streams import EventStream
from tests.helpers.topology import System, login

EXCHANGE = "/procall.mesh.peer.v1.PeerService/Exchange"
HEARTBEAT = "/procall.mesh.lookup.v1.LookupService/Heartbeat"
DEREGISTER = "/procall.mesh.lookup.v1.LookupService/Deregister"


class _Listening(peer_grpc.PeerServiceServicer):
    """A fake UCServer: records what real servers send when they dial it."""

    def __init__(self) -> None:
        self.metadata: list[tuple[str, str]] = []
        self.called = asyncio.Event()

    async def Exchange(
        self, request_iterator: AsyncIterator[peer_pb.ExchangeRequest], context: object
    ) -> AsyncIterator[peer_pb.ExchangeResponse]:
        self.metadata.extend(
            (m.key, m.value)
            for m in context.invocation_metadata() or ()  # type: ignore[attr-defined]
        )
        self.called.set()
        await anext(aiter(request_iterator))
        yield peer_pb.ExchangeResponse(hello=peer_pb.PeerHello(server_id="uc-fake", epoch=1))


def _forged_message() -> session_pb2.Event:
    return session_pb2.Event(
        message_created=chat_pb2.MessageCreated(
            message=chat_pb2.Message(message_id=666, text="from bob, honestly")
        )
    )


async def _exchange(
    address: str, metadata: tuple[tuple[str, str], ...], hello_id: str, recipient: str
) -> None:
    """Open a peer stream with ``metadata`` and push one forged delivery."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = peer_grpc.PeerServiceStub(channel).Exchange(metadata=metadata)
        await call.write(
            peer_pb.ExchangeRequest(hello=peer_pb.PeerHello(server_id=hello_id, epoch=1))
        )
        await call.read()
        delivery = peer_pb.Delivery(sequence=1, recipient_user_ids=[recipient])
        delivery.event.CopyFrom(_forged_message())
        await call.write(peer_pb.ExchangeRequest(delivery=delivery))
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass


async def test_a_fake_server_gets_no_credential_and_cannot_replay_what_it_got(
    plain_system: System,
) -> None:
    system = plain_system
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    fake = _Listening()
    server = grpc.aio.server()
    peer_grpc.add_PeerServiceServicer_to_server(fake, server)
    fake_address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    alice = await login(uc1.address, "alice")
    stream = EventStream(uc1.address, alice.session_token)
    await stream.open()
    try:
        # the real uc-2 dials the fake through its own peer mesh
        links = uc2.components["links"]
        assert isinstance(links, PeerLinks)
        links.hello_from("uc-fake", fake_address)
        await asyncio.wait_for(fake.called.wait(), 10)
        secret = uc2.settings.auth.service_credential
        assert secret and not any(secret in value for _, value in fake.metadata)
        captured = tuple((k, v) for k, v in fake.metadata if k == PROOF_HEADER)
        assert captured  # what the fake holds: a proof made for it alone

        # replayed on the real servers, as the server it names and as anyone else
        for target in (uc1, uc2):
            for hello_id in ("uc-2", "uc-fake"):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await _exchange(target.address, captured, hello_id, system.users["alice"])
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await asyncio.sleep(0.3)
        assert stream.drain("message_created") == []
    finally:
        await stream.close()
        await server.stop(0)


async def test_a_proof_works_once_and_only_for_the_server_it_names(plain_system: System) -> None:
    system = plain_system
    uc1 = system.ucservers["uc-1"]
    signer = ProofSigner(uc1.settings.auth.service_credential, "ucserver", "uc-2")
    proof = ((PROOF_HEADER, signer.proof("uc-1", EXCHANGE)),)
    alice = system.users["alice"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # as another server than its own
        await _exchange(uc1.address, proof, "uc-9", alice)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    proof = ((PROOF_HEADER, signer.proof("uc-1", EXCHANGE)),)
    await _exchange(uc1.address, proof, "uc-2", alice)  # the genuine article
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # the same proof again
        await _exchange(uc1.address, proof, "uc-2", alice)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong_method = ((PROOF_HEADER, signer.proof("uc-1", HEARTBEAT)),)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _exchange(uc1.address, wrong_method, "uc-2", alice)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _servers(system: System) -> lookup_pb.ListServersResponse:
    """The Lookup's listing, read by the operator."""
    async with system.operator_channel(system.lookup) as channel:
        return await lookup_grpc.LookupServiceStub(channel).ListServers(
            lookup_pb.ListServersRequest()
        )


async def test_the_lookup_takes_registrations_only_from_the_server_itself(
    plain_system: System,
) -> None:
    system = plain_system
    credential = system.lookup.settings.auth.service_credential
    async with grpc.aio.insecure_channel(system.lookup.address) as channel:
        stub = lookup_grpc.LookupServiceStub(channel)
        listed = await _servers(system)
        uc1 = next(s for s in listed.servers if s.server_id == "uc-1")
        takeover = lookup_pb2.ServerInfo(
            server_id="uc-1", role=lookup_pb2.ROLE_UCSERVER, address="127.0.0.1:9"
        )
        outsiders = {
            "no proof": (),
            "another credential": (
                (PROOF_HEADER, ProofSigner("guessed", "ucserver", "uc-1").proof(
                    role_target("lookup"), HEARTBEAT)),
            ),
        }  # fmt: skip
        for metadata in outsiders.values():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Heartbeat(lookup_pb.HeartbeatRequest(server=takeover), metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        other = ProofSigner(credential, "ucserver", "uc-2")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Heartbeat(
                lookup_pb.HeartbeatRequest(server=takeover),
                metadata=((PROOF_HEADER, other.proof(role_target("lookup"), HEARTBEAT)),),
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for metadata in (
            (),
            ((PROOF_HEADER, other.proof(role_target("lookup"), DEREGISTER)),),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Deregister(
                    lookup_pb.DeregisterRequest(server_id="uc-1", epoch=uc1.epoch),
                    metadata=metadata,
                )
            assert refused.value.code() in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            )
        after = await _servers(system)
    still = next(s for s in after.servers if s.server_id == "uc-1")
    assert (still.address, still.epoch) == (uc1.address, uc1.epoch)
