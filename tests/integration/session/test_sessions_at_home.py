"""The home server knows every session of its users, wherever they logged in, and a
logout on any server ends the session's presence; the stream's sequence numbers are
what the contract says; a second client of a user tells watchers nothing new."""

from __future__ import annotations

import asyncio

import grpc
import pytest

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

AVAILABLE = presence_pb2.AVAILABILITY_AVAILABLE
BUSY = presence_pb2.AVAILABILITY_BUSY
OFFLINE = presence_pb2.AVAILABILITY_OFFLINE


async def _logout(address: str, token: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=auth(token)
        )


async def _watching(center: Center, watcher: str, watched: str) -> tuple[EventStream, str]:
    """A stream of ``watcher`` (homed on uc-1) that has ``watched`` as a contact."""
    login = await log_in(center.uc1.address, watcher)
    stream = EventStream(center.uc1.address, login.session_token)
    await stream.open()
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        await presence_grpc.PresenceServiceStub(channel).AddContacts(
            presence_pb.AddContactsRequest(user_ids=[center.users[watched]]),
            metadata=auth(login.session_token),
        )
    return stream, login.session_token


async def _until(stream: EventStream, user_id: str, availability: int) -> presence_pb2.Presence:
    """The first change of ``user_id`` to ``availability`` on the stream."""
    while True:
        seen = await stream.presence_of(user_id)
        if seen.availability == availability:
            return seen


async def _presence_of(address: str, token: str, user_id: str) -> presence_pb2.Presence:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await presence_grpc.PresenceServiceStub(channel).GetPresence(
            presence_pb.GetPresenceRequest(user_id=user_id), metadata=auth(token)
        )
    return reply.presence


@pytest.mark.parametrize("logout_at", ["home", "the server of the login"])
async def test_presence_set_after_a_login_elsewhere_ends_with_the_logout(
    center: Center, logout_at: str
) -> None:
    """What the CLI does half the time: log in through a server that is not the home,
    set presence (the client goes on to the home), log out."""
    alice, alice_token = await _watching(center, "alice", "bob")
    bob = await log_in(center.uc1.address, "bob")  # bob's home is uc-2
    assert not bob.is_home_server
    await set_presence(center.uc2.address, bob.session_token, BUSY, "in a meeting")
    seen = await _until(alice, center.users["bob"], BUSY)
    assert seen.note == "in a meeting"

    where = center.uc2 if logout_at == "home" else center.uc1
    await _logout(where.address, bob.session_token)
    await _until(alice, center.users["bob"], OFFLINE)  # the session's presence ended
    now = await _presence_of(center.uc1.address, alice_token, center.users["bob"])
    assert now.availability == OFFLINE
    await alice.close()


async def test_a_logout_elsewhere_closes_the_stream_on_the_home_server(center: Center) -> None:
    alice, _ = await _watching(center, "alice", "bob")
    bob = await log_in(center.uc2.address, "bob")
    stream = EventStream(center.uc2.address, bob.session_token)
    await stream.open()
    await alice.presence_of(center.users["bob"])  # online

    await _logout(center.uc1.address, bob.session_token)  # not bob's home
    while True:
        event = await stream.next()
        if event.HasField("session_closed"):
            break
    await _until(alice, center.users["bob"], OFFLINE)
    await stream.close()
    await alice.close()


async def test_the_home_server_lists_a_session_that_logged_in_elsewhere(center: Center) -> None:
    bob = await log_in(center.uc1.address, "bob")
    await _presence_of(center.uc2.address, bob.session_token, center.users["alice"])
    root = await log_in(center.uc2.address, "root")
    async with grpc.aio.insecure_channel(center.uc2.address) as channel:
        sessions = await admin_grpc.AdminServiceStub(channel).ListSessions(
            admin_pb.ListSessionsRequest(), metadata=auth(root.session_token)
        )
    assert ("bob", "uc-2") in {(s.username, s.server_id) for s in sessions.sessions}


async def test_welcome_is_outside_the_sequence_and_events_count_from_1(center: Center) -> None:
    alice = await log_in(center.uc1.address, "alice")
    stream = EventStream(center.uc1.address, alice.session_token)
    welcome = await stream.open()
    assert welcome.HasField("welcome") and welcome.sequence == 0
    first = await stream.next()  # her own presence: online
    assert first.HasField("presence_changed") and first.sequence == 1
    await set_presence(center.uc1.address, alice.session_token, BUSY)
    second = await stream.presence_of(center.users["alice"])
    assert second.availability == BUSY
    await stream.close()

    # the Welcome's resume token is the point the stream started from: before event 1
    again = EventStream(center.uc1.address, alice.session_token, resume_token=welcome.resume_token)
    resumed = await again.open()
    assert resumed.welcome.resumed and resumed.sequence == 0
    assert [(await again.next()).sequence for _ in range(2)] == [1, 2]
    await again.close()


async def test_a_second_client_of_a_user_tells_watchers_nothing_new(center: Center) -> None:
    alice, _ = await _watching(center, "alice", "bob")
    bob = await log_in(center.uc2.address, "bob")
    bob_stream = EventStream(center.uc2.address, bob.session_token)
    await bob_stream.open()
    first = await alice.presence_of(center.users["bob"])
    assert first.availability == AVAILABLE

    again = await log_in(center.uc2.address, "bob")  # the CLI logs in again, and out
    await set_presence(center.uc2.address, again.session_token, AVAILABLE)  # what it is
    await _logout(center.uc2.address, again.session_token)
    with pytest.raises(asyncio.TimeoutError):
        await alice.presence_of(center.users["bob"], timeout=1.0)

    await set_presence(center.uc2.address, bob.session_token, BUSY, "now busy")
    busy = await alice.presence_of(center.users["bob"])
    assert (busy.availability, busy.note) == (BUSY, "now busy")
    assert busy.version > first.version
    await bob_stream.close()
    await alice.close()


async def test_presence_is_set_on_the_home_server_only(center: Center) -> None:
    """A presence set where the session does not live could not end with it."""
    bob = await log_in(center.uc1.address, "bob")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await set_presence(center.uc1.address, bob.session_token, BUSY)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = reason_of(failure.value)
    assert info.reason == "WRONG_HOME_SERVER"
    assert info.metadata["home_server_address"] == center.uc2.address
    now = await _presence_of(center.uc1.address, bob.session_token, center.users["bob"])
    assert now.availability == OFFLINE  # nothing was set
