"""A whole system over TLS: clients on the client port, servers over mutual TLS on the mesh
port; what is refused there (no certificate, another CA's certificate, mesh methods on the
client port)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.mesh.peer.v1 import peer_service_pb2 as peer_pb
from procall.mesh.peer.v1 import peer_service_pb2_grpc as peer_grpc
from procall.security import ensure_ca, issue
from procall.servers.runtime.app import StartupError
from procall.servers.runtime.grpc_server import BindError
from procall.settings import Settings
from tests.helpers.streams import EventStream
from tests.helpers.tls import certificate, tls_channel, use_tls
from tests.helpers.topology import StartApp, System, auth, login


async def test_login_and_presence_across_two_ucservers_over_mutual_tls(tls_system: System) -> None:
    system = tls_system
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    assert uc1.address != uc1.mesh_address  # two ports: clients and servers apart
    alice = await login(uc1.address, "alice", system.channel)
    bob = await login(uc2.address, "bob", system.channel)
    stream = EventStream(uc1.address, alice.session_token, system.channel)
    await stream.open()
    try:
        async with system.channel(uc1.address) as channel:
            await presence_grpc.PresenceServiceStub(channel).AddContacts(
                presence_pb.AddContactsRequest(user_ids=[system.users["bob"]]),
                metadata=auth(alice.session_token),
            )
        async with system.channel(uc2.address) as channel:
            await presence_grpc.PresenceServiceStub(channel).SetPresence(
                presence_pb.SetPresenceRequest(
                    availability=presence_pb2.AVAILABILITY_BUSY, note="over mTLS"
                ),
                metadata=auth(bob.session_token),
            )
        while True:
            event = await stream.next_of("presence_changed")
            if event.presence_changed.presence.note == "over mTLS":
                break
        assert event.presence_changed.presence.user_id == system.users["bob"]
    finally:
        await stream.close()


async def test_the_lookup_lists_both_addresses_and_redirects_to_the_client_one(
    tls_system: System,
) -> None:
    system = tls_system
    async with system.operator_channel(system.lookup) as channel:
        reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
            lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
        )
    listed = {s.server_id: (s.address, s.mesh_address) for s in reply.servers}
    assert listed == {
        uc_id: (uc.address, uc.mesh_address) for uc_id, uc in system.ucservers.items()
    }
    # a client that logs in on the wrong server is sent to the home server's client port
    alice = await login(system.ucservers["uc-2"].address, "alice", system.channel)
    assert alice.session.home_server.address == system.ucservers["uc-1"].address


async def test_client_port_refuses_mesh_methods(tls_system: System, tmp_path: Path) -> None:
    system = tls_system
    uc1 = system.ucservers["uc-1"]
    own = certificate(tmp_path / "tls", "ucserver", "uc-2")
    # the client port never asks for a certificate: nothing there is a server
    async with tls_channel(uc1.address, system.ca_file or "", own) as channel:
        call = peer_grpc.PeerServiceStub(channel).Exchange()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.write(
                peer_pb.ExchangeRequest(hello=peer_pb.PeerHello(server_id="uc-2", epoch=1))
            )
            await call.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with tls_channel(system.lookup.address, system.ca_file or "", own) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lookup_grpc.LookupServiceStub(channel).Heartbeat(
                lookup_pb.HeartbeatRequest(
                    server=lookup_pb2.ServerInfo(
                        server_id="uc-2", role=lookup_pb2.ROLE_UCSERVER, address="127.0.0.1:1"
                    )
                )
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_mesh_port_refuses_no_certificate_and_another_cas(
    tls_system: System, tmp_path: Path
) -> None:
    system = tls_system
    stranger = issue(ensure_ca(tmp_path / "other-ca"), "ucserver", "uc-2")
    request = lookup_pb.ListServersRequest()
    for client in (None, stranger):
        async with tls_channel(system.lookup.mesh_address, system.ca_file or "", client) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await lookup_grpc.LookupServiceStub(ch).ListServers(request, timeout=5)
            # a failed handshake reaches the client only as UNAVAILABLE
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # and the system's own certificate is let in
    own = certificate(tmp_path / "tls", "ucserver", "uc-2")
    async with tls_channel(system.lookup.mesh_address, system.ca_file or "", own) as channel:
        reply = await lookup_grpc.LookupServiceStub(channel).ListServers(request, timeout=5)
    assert {s.server_id for s in reply.servers} >= {"uc-1", "uc-2"}


async def test_a_server_registers_and_removes_only_itself_over_tls(
    tls_system: System, tmp_path: Path
) -> None:
    system = tls_system
    uc2 = certificate(tmp_path / "tls", "ucserver", "uc-2")
    operator = certificate(tmp_path / "tls", "operator", "local")
    stub_for = lookup_grpc.LookupServiceStub
    async with system.operator_channel(system.lookup) as channel:
        listed = await stub_for(channel).ListServers(lookup_pb.ListServersRequest())
    uc1_info = next(s for s in listed.servers if s.server_id == "uc-1")
    takeover = lookup_pb2.ServerInfo(
        server_id="uc-1", role=lookup_pb2.ROLE_UCSERVER, address="127.0.0.1:9", epoch=0
    )
    for holder in (uc2, operator):
        async with tls_channel(system.lookup.mesh_address, system.ca_file or "", holder) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub_for(ch).Heartbeat(lookup_pb.HeartbeatRequest(server=takeover))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub_for(ch).Deregister(
                    lookup_pb.DeregisterRequest(server_id="uc-1", epoch=uc1_info.epoch)
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with system.operator_channel(system.lookup) as channel:
        after = await stub_for(channel).ListServers(lookup_pb.ListServersRequest())
    still = next(s for s in after.servers if s.server_id == "uc-1")
    assert (still.address, still.epoch) == (uc1_info.address, uc1_info.epoch)


async def test_a_server_cannot_speak_as_another_on_the_peer_stream(
    tls_system: System, tmp_path: Path
) -> None:
    system = tls_system
    uc1 = system.ucservers["uc-1"]
    uc2 = certificate(tmp_path / "tls", "ucserver", "uc-2")
    operator = certificate(tmp_path / "tls", "operator", "local")
    for holder, claimed in ((uc2, "uc-9"), (uc2, "uc-1"), (operator, "local")):
        async with tls_channel(uc1.mesh_address, system.ca_file or "", holder) as channel:
            call = peer_grpc.PeerServiceStub(channel).Exchange()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.write(
                    peer_pb.ExchangeRequest(hello=peer_pb.PeerHello(server_id=claimed, epoch=1))
                )
                await call.read()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_server_refuses_to_start_with_a_key_others_can_read(
    start_app: StartApp, settings: Callable[[], Settings], tmp_path: Path
) -> None:
    made = use_tls(settings(), tmp_path / "tls", "lookup", "lookup-9")
    Path(made.tls.key_file).chmod(0o644)
    with pytest.raises(BindError, match="chmod 600"):
        await start_app("lookup", made)
    Path(made.tls.key_file).chmod(0o600)
    made.tls.cert_file = str(tmp_path / "missing.pem")
    with pytest.raises(BindError, match="missing.pem"):
        await start_app("lookup", made)
    uc = use_tls(settings(), tmp_path / "tls", "ucserver", "uc-9")
    uc.lookup.address = "127.0.0.1:1"
    Path(uc.tls.key_file).chmod(0o640)
    with pytest.raises(StartupError, match="chmod 600"):
        await start_app("ucserver", uc)
