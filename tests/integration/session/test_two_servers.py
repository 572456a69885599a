"""Two UCServers, a Lookup, a Directory and a real Redis: login, home routing, resume and
the license pool, all over gRPC (presence across the servers: tests/integration/presence)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from tests.helpers.center import Center, set_presence
from tests.helpers.streams import EventStream
from tests.helpers.topology import auth
from tests.helpers.topology import error_info as reason_of
from tests.helpers.topology import login as log_in


async def test_login_anywhere_then_connect_at_home(center: Center) -> None:
    login = await log_in(center.uc2.address, "alice")
    assert not login.is_home_server
    assert login.session.home_server.server_id == "uc-1"
    assert login.session.home_server.address == center.uc1.address

    wrong = EventStream(center.uc2.address, login.session_token)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await wrong.open()
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = reason_of(failure.value)
    assert info.reason == "WRONG_HOME_SERVER"
    assert info.metadata["home_server_address"] == center.uc1.address
    await wrong.channel.close()

    home = EventStream(center.uc1.address, login.session_token)
    welcome = await home.open()
    assert welcome.welcome.session.user_id == center.users["alice"]
    assert not welcome.welcome.resumed
    await home.close()


async def test_bad_credentials_and_tokens_are_refused(center: Center) -> None:
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        stub = session_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Login(session_pb.LoginRequest(username="alice", password="wrong"))
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Logout(session_pb.LogoutRequest(), metadata=auth("forged.token"))
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_resume_replays_exactly_the_missed_events(center: Center) -> None:
    alice = await log_in(center.uc1.address, "alice")
    bob = await log_in(center.uc2.address, "bob")
    first = EventStream(center.uc1.address, alice.session_token)
    await first.open()
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        await presence_grpc.PresenceServiceStub(channel).AddContacts(
            presence_pb.AddContactsRequest(user_ids=[center.users["bob"]]),
            metadata=auth(alice.session_token),
        )
    await set_presence(center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_AWAY, "n1")
    while True:
        event = await first.next()
        if event.presence_changed.presence.note == "n1":
            break
    last_seen = event
    await first.ack(last_seen.sequence)
    await first.close()

    for note in ("n2", "n3", "n4"):
        await set_presence(
            center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_AWAY, note
        )
    await asyncio.sleep(0.5)

    resumed = EventStream(
        center.uc1.address, alice.session_token, resume_token=last_seen.resume_token
    )
    welcome = await resumed.open()
    assert welcome.welcome.resumed
    replay = [await resumed.next() for _ in range(3)]
    assert [e.presence_changed.presence.note for e in replay] == ["n2", "n3", "n4"]
    assert [e.sequence for e in replay] == [last_seen.sequence + i for i in (1, 2, 3)]
    with pytest.raises(asyncio.TimeoutError):
        await resumed.next(timeout=0.5)  # nothing duplicated
    await resumed.close()

    stale = EventStream(center.uc1.address, alice.session_token, resume_token="bm90LWEtdG9rZW4")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stale.open()
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(failure.value).reason == "RESUME_EXPIRED"
    await stale.channel.close()

    # a client that says it can reopen gets a fresh stream of its session at once, told
    # that the resume was lost (no second round trip), and the events still unacked
    reopened = EventStream(
        center.uc1.address,
        alice.session_token,
        resume_token="bm90LWEtdG9rZW4",
        reopen_if_resume_lost=True,
    )
    welcome = await reopened.open()
    assert welcome.welcome.resume_lost and not welcome.welcome.resumed
    assert "resume token is not valid" in welcome.welcome.resume_lost_reason
    assert welcome.welcome.session.session_id == alice.session.session_id
    replay = [await reopened.next() for _ in range(3)]
    assert [e.presence_changed.presence.note for e in replay] == ["n2", "n3", "n4"]
    await reopened.close()


async def test_license_pool_exhaustion_and_return(center: Center) -> None:
    tokens = {}
    for name, server in [("alice", center.uc1), ("bob", center.uc2), ("carol", center.uc1),
                         ("dave", center.uc2)]:  # fmt: skip
        tokens[name] = (await log_in(server.address, name)).session_token
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await log_in(center.uc1.address, "erin")
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(failure.value).reason == "LICENSE_POOL_EXHAUSTED"
    async with grpc.aio.insecure_channel(center.uc2.address) as channel:
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=auth(tokens["bob"])
        )
    assert (await log_in(center.uc1.address, "erin")).is_home_server


async def test_admin_sees_sessions_servers_and_licenses_system_wide(center: Center) -> None:
    alice = await log_in(center.uc1.address, "alice")
    await log_in(center.uc2.address, "bob")
    root = await log_in(center.uc2.address, "root")
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        sessions = await admin.ListSessions(
            admin_pb.ListSessionsRequest(), metadata=auth(root.session_token)
        )
        where = {(s.username, s.server_id, s.admin) for s in sessions.sessions}
        assert where == {("alice", "uc-1", False), ("bob", "uc-2", False), ("root", "uc-2", True)}
        paged: list[str] = []
        token = ""
        while True:  # two per page: every session once, oldest login first
            page = await admin.ListSessions(
                admin_pb.ListSessionsRequest(page_size=2, page_token=token),
                metadata=auth(root.session_token),
            )
            paged += [s.username for s in page.sessions]
            token = page.next_page_token
            if not token:
                break
        assert paged == ["alice", "bob", "root"]
        with pytest.raises(grpc.aio.AioRpcError) as offset:
            await admin.ListSessions(
                admin_pb.ListSessionsRequest(page_token="2"), metadata=auth(root.session_token)
            )
        assert offset.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        pool = await admin.GetLicensePool(
            admin_pb.GetLicensePoolRequest(), metadata=auth(root.session_token)
        )
        assert (pool.pool.total, pool.pool.in_use) == (4, 3)
        assert dict(pool.pool.in_use_by_server) == {"uc-1": 1, "uc-2": 2}
        servers = await admin.ListServers(
            admin_pb.ListServersRequest(role=admin_pb2.SERVER_ROLE_UCSERVER),
            metadata=auth(root.session_token),
        )
        assert {s.server_id for s in servers.servers} == {"uc-1", "uc-2"}
        assert all(s.state == admin_pb2.SERVER_STATE_SERVING for s in servers.servers)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await admin.ListSessions(
                admin_pb.ListSessionsRequest(), metadata=auth(alice.session_token)
            )
        assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
