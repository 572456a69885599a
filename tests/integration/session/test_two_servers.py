"""Two UCServers, a Lookup, a Directory and a real Redis: login, home routing, resume,
presence across servers, delegation and the license pool, all over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.app import ServerApp
from procall.settings import Settings

StartApp = Callable[[str, Settings], Awaitable[ServerApp]]
PASSWORD = "correct horse battery"


@dataclass
class Center:
    directory: ServerApp
    lookup: ServerApp
    uc1: ServerApp
    uc2: ServerApp
    users: dict[str, str]  # username -> user_id


def _settings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    settings = make_settings(redis_url)
    settings.auth.token_secret = "integration-test-secret-0123456789"
    settings.auth.service_credential = "service-secret"
    settings.auth.license_pool_size = 4
    settings.lookup.heartbeat_interval = 0.2
    settings.lookup.heartbeat_ttl = 1.0
    settings.directory.argon2_time_cost = 1
    settings.directory.argon2_memory_kib = 1024
    settings.directory.argon2_parallelism = 1
    return settings


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def center(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> AsyncIterator[Center]:
    directory = await start_app("directory", _settings(make_settings, redis_url))
    lookup_settings = _settings(make_settings, redis_url)
    lookup_settings.directory.address = directory.address
    lookup = await start_app("lookup", lookup_settings)
    apps = []
    for server_id in ("uc-1", "uc-2"):
        settings = _settings(make_settings, redis_url)
        settings.server.server_id = server_id
        settings.directory.address = directory.address
        settings.lookup.address = lookup.address
        apps.append(await start_app("ucserver", settings))
    users: dict[str, str] = {}
    async with grpc.aio.insecure_channel(directory.address) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for name, home in [("alice", "uc-1"), ("bob", "uc-2"), ("carol", "uc-1"),
                           ("dave", "uc-2"), ("erin", "uc-1"), ("root", "uc-2")]:  # fmt: skip
            reply = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(
                        username=name,
                        display_name=name.title(),
                        home_server_id=home,
                        admin=name == "root",
                    ),
                    password=PASSWORD,
                )
            )
            users[name] = reply.user.user_id
        await stub.CreateDelegation(
            directory_pb.CreateDelegationRequest(
                delegation=directory_pb2.Delegation(
                    principal_user_id=users["alice"],
                    delegate_user_id=users["carol"],
                    scopes=[directory_pb2.DELEGATION_SCOPE_PRESENCE_SET],
                )
            )
        )

    async def both_registered() -> bool:
        async with grpc.aio.insecure_channel(lookup.address) as channel:
            reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
                lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
            )
        return {s.server_id for s in reply.servers} == {"uc-1", "uc-2"}

    await _wait_for(both_registered)
    await asyncio.sleep(0.6)  # the peer mesh refreshes its topology every heartbeat interval
    yield Center(directory, lookup, apps[0], apps[1], users)


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def _login(address: str, username: str) -> session_pb.LoginResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await session_grpc.SessionServiceStub(channel).Login(
            session_pb.LoginRequest(username=username, password=PASSWORD, client_name="test")
        )


class Stream:
    """A client's Connect stream, reading events in the background."""

    def __init__(self, address: str, token: str, resume_token: str = "") -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.call = session_grpc.SessionServiceStub(self.channel).Connect(metadata=_auth(token))
        self.events: asyncio.Queue[session_pb2.Event | grpc.aio.AioRpcError] = asyncio.Queue()
        self._resume = resume_token
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> session_pb2.Event:
        await self.call.write(
            session_pb.ConnectRequest(open=session_pb.OpenStream(resume_token=self._resume))
        )
        self._task = asyncio.create_task(self._read())
        return await self.next()

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                await self.events.put(reply.event)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                await self.events.put(error)

    async def next(self, timeout: float = 5) -> session_pb2.Event:
        item = await asyncio.wait_for(self.events.get(), timeout)
        if isinstance(item, grpc.aio.AioRpcError):
            raise item
        return item

    async def presence_of(self, user_id: str, timeout: float = 5) -> presence_pb2.Presence:
        while True:
            event = await self.next(timeout)
            if event.HasField("presence_changed") and event.presence_changed.presence.user_id == (
                user_id
            ):
                return event.presence_changed.presence

    async def ack(self, sequence: int) -> None:
        await self.call.write(session_pb.ConnectRequest(ack=session_pb.Ack(sequence=sequence)))

    async def close(self) -> None:
        self.call.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()


def _reason(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo")


async def _set_presence(
    address: str, token: str, availability: int, note: str = "", user_id: str = ""
) -> presence_pb2.Presence:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await presence_grpc.PresenceServiceStub(channel).SetPresence(
            presence_pb.SetPresenceRequest(user_id=user_id, availability=availability, note=note),
            metadata=_auth(token),
        )
    return reply.presence


async def test_login_anywhere_then_connect_at_home(center: Center) -> None:
    login = await _login(center.uc2.address, "alice")
    assert not login.is_home_server
    assert login.session.home_server.server_id == "uc-1"
    assert login.session.home_server.address == center.uc1.address

    wrong = Stream(center.uc2.address, login.session_token)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await wrong.open()
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = _reason(failure.value)
    assert info.reason == "WRONG_HOME_SERVER"
    assert info.metadata["home_server_address"] == center.uc1.address
    await wrong.channel.close()

    home = Stream(center.uc1.address, login.session_token)
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
            await stub.Logout(session_pb.LogoutRequest(), metadata=_auth("forged.token"))
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_presence_change_reaches_a_watcher_on_the_other_server(center: Center) -> None:
    alice = await _login(center.uc1.address, "alice")
    bob = await _login(center.uc2.address, "bob")
    alice_stream = Stream(center.uc1.address, alice.session_token)
    await alice_stream.open()
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        added = await presence_grpc.PresenceServiceStub(channel).AddContacts(
            presence_pb.AddContactsRequest(user_ids=[center.users["bob"]]),
            metadata=_auth(alice.session_token),
        )
    assert added.contacts[0].availability == presence_pb2.AVAILABILITY_AVAILABLE
    await asyncio.sleep(0.1)

    await _set_presence(
        center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_BUSY, "in a meeting"
    )
    seen = await alice_stream.presence_of(center.users["bob"])
    assert (seen.availability, seen.note) == (presence_pb2.AVAILABILITY_BUSY, "in a meeting")
    await alice_stream.close()


async def test_presence_delegation_allowed_and_denied(center: Center) -> None:
    carol = await _login(center.uc1.address, "carol")
    bob = await _login(center.uc2.address, "bob")
    await _login(center.uc1.address, "alice")
    changed = await _set_presence(
        center.uc1.address, carol.session_token, presence_pb2.AVAILABILITY_DO_NOT_DISTURB,
        "set by my assistant", user_id=center.users["alice"],
    )  # fmt: skip
    assert changed.availability == presence_pb2.AVAILABILITY_DO_NOT_DISTURB
    assert changed.set_by_user_id == center.users["carol"]
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await _set_presence(
            center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_AWAY,
            user_id=center.users["alice"],
        )  # fmt: skip
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_resume_replays_exactly_the_missed_events(center: Center) -> None:
    alice = await _login(center.uc1.address, "alice")
    bob = await _login(center.uc2.address, "bob")
    first = Stream(center.uc1.address, alice.session_token)
    await first.open()
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        await presence_grpc.PresenceServiceStub(channel).AddContacts(
            presence_pb.AddContactsRequest(user_ids=[center.users["bob"]]),
            metadata=_auth(alice.session_token),
        )
    await _set_presence(center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_AWAY, "n1")
    while True:
        event = await first.next()
        if event.presence_changed.presence.note == "n1":
            break
    last_seen = event
    await first.ack(last_seen.sequence)
    await first.close()

    for note in ("n2", "n3", "n4"):
        await _set_presence(
            center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_AWAY, note
        )
    await asyncio.sleep(0.5)

    resumed = Stream(center.uc1.address, alice.session_token, last_seen.resume_token)
    welcome = await resumed.open()
    assert welcome.welcome.resumed
    replay = [await resumed.next() for _ in range(3)]
    assert [e.presence_changed.presence.note for e in replay] == ["n2", "n3", "n4"]
    assert [e.sequence for e in replay] == [last_seen.sequence + i for i in (1, 2, 3)]
    with pytest.raises(asyncio.TimeoutError):
        await resumed.next(timeout=0.5)  # nothing duplicated
    await resumed.close()

    stale = Stream(center.uc1.address, alice.session_token, "bm90LWEtdG9rZW4")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stale.open()
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(failure.value).reason == "RESUME_EXPIRED"
    await stale.channel.close()


async def test_license_pool_exhaustion_and_return(center: Center) -> None:
    tokens = {}
    for name, server in [("alice", center.uc1), ("bob", center.uc2), ("carol", center.uc1),
                         ("dave", center.uc2)]:  # fmt: skip
        tokens[name] = (await _login(server.address, name)).session_token
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await _login(center.uc1.address, "erin")
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _reason(failure.value).reason == "LICENSE_POOL_EXHAUSTED"
    async with grpc.aio.insecure_channel(center.uc2.address) as channel:
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=_auth(tokens["bob"])
        )
    assert (await _login(center.uc1.address, "erin")).is_home_server


async def test_admin_sees_sessions_servers_and_licenses_system_wide(center: Center) -> None:
    alice = await _login(center.uc1.address, "alice")
    await _login(center.uc2.address, "bob")
    root = await _login(center.uc2.address, "root")
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        sessions = await admin.ListSessions(
            admin_pb.ListSessionsRequest(), metadata=_auth(root.session_token)
        )
        where = {(s.username, s.server_id, s.admin) for s in sessions.sessions}
        assert where == {("alice", "uc-1", False), ("bob", "uc-2", False), ("root", "uc-2", True)}
        pool = await admin.GetLicensePool(
            admin_pb.GetLicensePoolRequest(), metadata=_auth(root.session_token)
        )
        assert (pool.pool.total, pool.pool.in_use) == (4, 3)
        assert dict(pool.pool.in_use_by_server) == {"uc-1": 1, "uc-2": 2}
        servers = await admin.ListServers(
            admin_pb.ListServersRequest(role=admin_pb2.SERVER_ROLE_UCSERVER),
            metadata=_auth(root.session_token),
        )
        assert {s.server_id for s in servers.servers} == {"uc-1", "uc-2"}
        assert all(s.state == admin_pb2.SERVER_STATE_SERVING for s in servers.servers)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await admin.ListSessions(
                admin_pb.ListSessionsRequest(), metadata=_auth(alice.session_token)
            )
        assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
