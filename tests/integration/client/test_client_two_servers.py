"""The client SDK against two real UCServers: login anywhere, redirects, presence events,
reconnect and resume through a faulty network path, keepalive, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.client import (
    Availability,
    ClientOptions,
    Connected,
    Disconnected,
    PresenceChanged,
    ProcallClient,
    ProcallClientError,
    Redirected,
    Resynced,
    ServerEndpoint,
    SessionClosed,
)
from tests.integration.client.conftest import FAST, PASSWORD, Center
from tests.integration.client.helpers import EventReader, via
from tests.integration.client.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_login_through_another_server_goes_home(center: Center) -> None:
    alice = await center.new_user("uc-1")
    client = await ProcallClient.login(center.address("uc-2"), alice.username, PASSWORD)
    try:
        assert client.home_server == ServerEndpoint("uc-1", center.address("uc-1"))
        assert client.user_id == alice.user_id
        reader = EventReader(client)
        connected = await reader.next(Connected)
        assert connected.server.server_id == "uc-1" and not connected.resumed
        own = await client.set_presence(Availability.AWAY, note="lunch")
        assert (own.availability, own.note) == (Availability.AWAY, "lunch")
        assert await client.contacts() == []  # contact calls only work at home
        await reader.stop()
    finally:
        await client.logout()


async def test_attached_token_follows_wrong_home_server(center: Center) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    login = await ProcallClient.login(
        center.address("uc-2"), alice.username, PASSWORD, connect=False
    )
    token = login.token
    await login.close()

    client = await ProcallClient.attach(center.address("uc-2"), token, options=FAST)
    try:
        reader = EventReader(client)
        redirected = await reader.next(Redirected)
        assert redirected.server == ServerEndpoint("uc-1", center.address("uc-1"))
        assert redirected.sequence == 0
        assert (await reader.next(Connected)).server.server_id == "uc-1"
        assert client.user_id == alice.user_id

        client.follow(ServerEndpoint("uc-2", center.address("uc-2")))  # a stale home
        added = await client.add_contacts([bob.user_id])  # WRONG_HOME_SERVER, followed
        assert [p.user_id for p in added] == [bob.user_id]
        assert client.home_server.address == center.address("uc-1")
        await reader.stop()
    finally:
        await client.logout()


async def test_presence_change_on_one_server_reaches_a_client_on_the_other(
    center: Center,
) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    async with (
        await ProcallClient.login(center.address("uc-1"), alice.username, PASSWORD) as a,
        await ProcallClient.login(center.address("uc-2"), bob.username, PASSWORD) as b,
    ):
        reader = EventReader(a)
        (added,) = await a.add_contacts([bob.user_id])
        assert added.availability == Availability.AVAILABLE
        await asyncio.sleep(0.1)
        await b.set_presence(Availability.BUSY, note="in a meeting")
        seen = await reader.presence_of(bob.user_id, "in a meeting")
        assert isinstance(seen, PresenceChanged)
        assert seen.availability == Availability.BUSY
        assert seen.version > added.version and seen.sequence > 0 and seen.time is not None
        assert seen.presence.note == "in a meeting"
        await reader.stop()


async def test_reconnect_resumes_exactly_the_missed_events(center: Center) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    proxy = await TcpProxy(center.address("uc-1")).start()
    a = await ProcallClient.login(
        center.address("uc-1"), alice.username, PASSWORD,
        options=FAST, channel_factory=via(proxy, center.address("uc-1")),
    )  # fmt: skip
    b = await ProcallClient.login(center.address("uc-2"), bob.username, PASSWORD)
    try:
        reader = EventReader(a)
        await a.add_contacts([bob.user_id])
        await asyncio.sleep(0.1)
        await b.set_presence(Availability.AWAY, note="n0")
        await reader.presence_of(bob.user_id, "n0")
        await asyncio.sleep(0.3)  # acked

        proxy.refuse(True)
        proxy.cut()
        await reader.next(Disconnected)
        for note in ("n1", "n2", "n3"):
            await b.set_presence(Availability.AWAY, note=note)
        await asyncio.sleep(0.3)  # delivered to alice's session on uc-1, not to her
        assert not [e for e in reader.seen if isinstance(e, PresenceChanged) and e.note == "n1"]
        proxy.refuse(False)

        resumed = await reader.next(Connected)
        assert resumed.resumed
        for note in ("n1", "n2", "n3"):
            await reader.presence_of(bob.user_id, note)
        await b.set_presence(Availability.AVAILABLE, note="n4")
        await reader.presence_of(bob.user_id, "n4")
        await reader.quiet(0.3)

        notes = [e.note for e in reader.of(PresenceChanged) if e.user_id == bob.user_id]
        assert notes == ["n0", "n1", "n2", "n3", "n4"]  # nothing lost, nothing twice
        sequences = [e.sequence for e in reader.seen if e.sequence]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        await reader.stop()
    finally:
        await a.logout()
        await b.logout()
        await proxy.close()


async def test_a_frozen_server_is_noticed_by_keepalive(center: Center) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    proxy = await TcpProxy(center.address("uc-1")).start()
    options = ClientOptions(
        keepalive_time_ms=500, keepalive_timeout_ms=500, backoff_initial=0.05, backoff_max=0.5
    )
    a = await ProcallClient.login(
        center.address("uc-1"), alice.username, PASSWORD,
        options=options, channel_factory=via(proxy, center.address("uc-1")),
    )  # fmt: skip
    b = await ProcallClient.login(center.address("uc-2"), bob.username, PASSWORD)
    try:
        reader = EventReader(a)
        await a.add_contacts([bob.user_id])
        await reader.next(Connected)
        await asyncio.sleep(0.2)
        proxy.freeze()
        started = asyncio.get_running_loop().time()
        await b.set_presence(Availability.BUSY, note="while frozen")
        await reader.next(Disconnected, timeout=5)
        assert asyncio.get_running_loop().time() - started < 4
        assert (await reader.next(Connected)).resumed
        await reader.presence_of(bob.user_id, "while frozen")
        await reader.stop()
    finally:
        await a.logout()
        await b.logout()
        await proxy.close()


async def test_presence_and_contact_calls(center: Center) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    carol = await center.new_user("uc-1")
    async with await ProcallClient.login(
        center.address("uc-1"), alice.username, PASSWORD, connect=False
    ) as client:
        assert await client.add_contacts([bob.user_id, carol.user_id])
        listed = await client.contacts()
        assert {p.user_id for p in listed} == {bob.user_id, carol.user_id}
        await client.remove_contacts([carol.user_id])
        assert [p.user_id for p in await client.contacts()] == [bob.user_id]

        await client.set_presence(Availability.BUSY, note="first")
        kept = await client.set_presence(note="second")  # availability untouched
        assert (kept.availability, kept.note) == (Availability.BUSY, "second")
        found = await client.get_presence([alice.user_id, bob.user_id])
        assert [p.user_id for p in found] == [alice.user_id, bob.user_id]
        assert found[0].note == "second"

        with pytest.raises(ProcallClientError) as failure:
            await client.set_presence(Availability.AWAY, user_id=bob.user_id)
        assert failure.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert failure.value.reason == "PERMISSION_DENIED"
        with pytest.raises(ProcallClientError) as failure:
            await client.get_presence(["x" * 65])
        assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert failure.value.field_violations
        with pytest.raises(ValueError):
            await client.set_presence()


async def test_wrong_password_and_logout(center: Center) -> None:
    alice = await center.new_user("uc-1")
    with pytest.raises(ProcallClientError) as failure:
        await ProcallClient.login(center.address("uc-2"), alice.username, "wrong")
    assert failure.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.value.reason == "BAD_CREDENTIALS"
    assert "wrong username or password" in str(failure.value)

    client = await ProcallClient.login(center.address("uc-1"), alice.username, PASSWORD)
    reader = EventReader(client)
    await reader.next(Connected)
    await client.logout()
    await asyncio.wait_for(reader.ended.wait(), 5)  # events() ends, quietly
    assert reader.error is None
    assert not reader.of(Disconnected)
    assert len(reader.of(SessionClosed)) <= 1
    with pytest.raises(ProcallClientError) as failure:
        await client.contacts()
    assert failure.value.code == grpc.StatusCode.CANCELLED  # the client is closed


async def test_a_lagging_consumer_loses_nothing(center: Center) -> None:
    alice = await center.new_user("uc-1")
    bob = await center.new_user("uc-2")
    options = ClientOptions(queue_size=2, ack_interval=0.05)
    async with (
        await ProcallClient.login(
            center.address("uc-1"), alice.username, PASSWORD, options=options
        ) as a,
        await ProcallClient.login(center.address("uc-2"), bob.username, PASSWORD) as b,
    ):
        await a.add_contacts([bob.user_id])
        await asyncio.sleep(0.1)
        notes = [f"m{i}" for i in range(12)]
        for note in notes:  # far more than the client queues: reading pauses meanwhile
            await b.set_presence(note=note)
        await asyncio.sleep(0.3)

        seen: list[PresenceChanged] = []
        async for event in a.events():  # leave the loop half way ...
            if isinstance(event, PresenceChanged) and event.note:
                seen.append(event)
                if len(seen) == 5:
                    break
        async for event in a.events():  # ... and carry on where it stopped
            if isinstance(event, PresenceChanged) and event.note:
                seen.append(event)
                if len(seen) == len(notes):
                    break
        assert [e.note for e in seen] == notes
        assert [e.sequence for e in seen] == list(range(seen[0].sequence, seen[-1].sequence + 1))


class _RedirectingServer(session_grpc.SessionServiceServicer):
    """A stand-in UCServer that is draining: one event, then a Redirect to ``target``."""

    def __init__(self, target: ServerEndpoint) -> None:
        self.target = target
        self.address = ""

    async def Connect(
        self, request_iterator: AsyncIterator[session_pb.ConnectRequest], context: Any
    ) -> AsyncIterator[session_pb.ConnectResponse]:
        first = await anext(aiter(request_iterator))
        assert first.HasField("open")
        here = session_pb2.ServerEndpoint(server_id="draining", address=self.address)
        events = [
            session_pb2.Event(
                sequence=0,
                resume_token="draining-0",
                welcome=session_pb2.Welcome(session=session_pb2.Session(home_server=here)),
            ),
            session_pb2.Event(
                sequence=1,
                resume_token="draining-1",
                presence_changed=presence_pb2.PresenceChanged(
                    presence=presence_pb2.Presence(user_id="someone", note="last words")
                ),
            ),
            session_pb2.Event(
                sequence=2,
                resume_token="draining-2",
                redirect=session_pb2.Redirect(
                    server=session_pb2.ServerEndpoint(
                        server_id=self.target.server_id, address=self.target.address
                    ),
                    reason="server draining",
                ),
            ),
        ]
        for event in events:
            yield session_pb.ConnectResponse(event=event)
        await asyncio.Event().wait()  # held open until the client leaves


async def test_redirect_event_is_followed(center: Center) -> None:
    alice = await center.new_user("uc-1")
    home = ServerEndpoint("uc-1", center.address("uc-1"))
    draining = _RedirectingServer(home)  # type: ignore[abstract]  # serves Connect only
    server = grpc.aio.server()
    session_grpc.add_SessionServiceServicer_to_server(draining, server)
    draining.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    login = await ProcallClient.login(home.address, alice.username, PASSWORD, connect=False)
    token = login.token
    await login.close()
    try:
        client = await ProcallClient.attach(draining.address, token, options=FAST)
        reader = EventReader(client)
        assert (await reader.next(Connected)).server.server_id == "draining"
        await reader.presence_of("someone", "last words")
        redirected = await reader.next(Redirected)
        assert (redirected.server, redirected.reason, redirected.sequence) == (
            home, "server draining", 2,
        )  # fmt: skip
        connected = await reader.next(Connected)  # the draining server's resume token is
        assert connected.server == home and not connected.resumed  # no use at home:
        resynced = await reader.next(Resynced)  # the state is fetched afresh
        assert resynced.contacts == ()
        assert client.home_server == home and client.user_id == alice.user_id
        await reader.stop()
        await client.logout()
    finally:
        await server.stop(0)
