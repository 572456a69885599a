"""Moving a user live: the session is handed over to the new home, the client is
redirected there and resumes; chat messages sent before, during and after the move
arrive exactly once, in one gap-free sequence. Over real UCServers, Redis and SQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.client import ClientOptions, MessageCreated, ProcallClient, Redirected, Resynced
from procall.settings import Settings
from tests.helpers.streams import EventStream
from tests.helpers.topology import (
    PASSWORD,
    StartApp,
    System,
    auth,
    error_info,
    fast_settings,
    login,
    start_system,
    wait_for,
)
from tests.integration.client.helpers import EventReader
from tests.integration.moves.helpers import FollowingClient, admin_stub, group_chat, send

HOMES = [("alice", "uc-1"), ("bob", "uc-2"), ("carol", "uc-1")]


@pytest.fixture
async def system(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> AsyncIterator[System]:
    yield await start_system(start_app, lambda: fast_settings(make_settings, redis_url), HOMES)


async def _home_in_directory(system: System, user_id: str) -> str:
    async with system.operator_channel(system.directory) as channel:
        reply = await directory_grpc.DirectoryServiceStub(channel).GetUser(
            directory_pb.GetUserRequest(user_id=user_id)
        )
    return reply.user.home_server_id


async def test_moved_session_is_redirected_and_resumes_exactly_once(system: System) -> None:
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    alice = await login(uc1.address, "alice")
    bob = await login(uc2.address, "bob")
    conversation = await group_chat(
        uc2.address, bob.session_token, [system.users["alice"], system.users["carol"]]
    )
    client = FollowingClient(uc1.address, alice.session_token)
    await client.start()
    sent: set[str] = set()
    async with grpc.aio.insecure_channel(uc2.address) as channel:
        chat = chat_grpc.ChatServiceStub(channel)

        async def burst(prefix: str, count: int) -> None:
            for n in range(count):
                text = f"{prefix}-{n}"
                await send(chat, bob.session_token, conversation, text)
                sent.add(text)

        await burst("before", 20)
        await client.wait_for(set(sent))
        stub, admin_channel, token = admin_stub(uc2)  # any UCServer runs the move
        during = asyncio.create_task(burst("during", 60))
        await asyncio.sleep(0.05)
        reply = await stub.MoveUser(
            admin_pb.MoveUserRequest(user_id=system.users["alice"], target_server_id="uc-2"),
            metadata=auth(token),
        )
        await during
        await burst("after", 20)
    assert reply.moved_users == 1
    assert reply.redirected_sessions == 1
    await client.wait_for(sent)
    await asyncio.sleep(0.3)  # nothing more may come
    client.check_exactly_once(sent)
    assert client.redirects == 1 and client.resumed == 1
    assert client.address == uc2.address
    assert await _home_in_directory(system, system.users["alice"]) == "uc-2"

    # the old token at the old home names the new one; the new token works at home
    old = EventStream(uc1.address, alice.session_token)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await old.open()
    assert error_info(failure.value).reason == "WRONG_HOME_SERVER"
    assert error_info(failure.value).metadata["home_server_id"] == "uc-2"
    await old.channel.close()
    # a new login lands at the new home
    again = await login(uc1.address, "alice")
    assert again.session.home_server.server_id == "uc-2"
    await client.close()
    await admin_channel.close()


async def test_moving_a_user_without_a_session_changes_the_home(system: System) -> None:
    stub, channel, token = admin_stub(system.ucservers["uc-1"])
    reply = await stub.MoveUser(
        admin_pb.MoveUserRequest(user_id=system.users["carol"], target_server_id="uc-2"),
        metadata=auth(token),
    )
    assert (reply.moved_users, reply.redirected_sessions) == (1, 0)
    assert await _home_in_directory(system, system.users["carol"]) == "uc-2"
    carol = await login(system.ucservers["uc-1"].address, "carol")
    assert carol.session.home_server.server_id == "uc-2"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.MoveUser(
            admin_pb.MoveUserRequest(user_id=system.users["carol"], target_server_id="uc-9"),
            metadata=auth(token),
        )
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    async def audited() -> bool:  # the audit log is written in batches
        reply = await stub.ListAuditEvents(
            admin_pb.ListAuditEventsRequest(action="admin.MoveUser"), metadata=auth(token)
        )
        return any("uc-2" in e.details for e in reply.events)

    await wait_for(audited)
    await channel.close()


async def test_the_sdk_follows_a_move_by_itself(system: System) -> None:
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    bob = await login(uc2.address, "bob")
    conversation = await group_chat(uc2.address, bob.session_token, [system.users["alice"]])
    options = ClientOptions(backoff_initial=0.05, backoff_max=0.5, ack_interval=0.1)
    client = await ProcallClient.login(uc1.address, "alice", PASSWORD, options=options)
    reader = EventReader(client)
    sent = []
    async with grpc.aio.insecure_channel(uc2.address) as channel:
        chat = chat_grpc.ChatServiceStub(channel)
        for n in range(10):
            await send(chat, bob.session_token, conversation, f"m{n}")
            sent.append(f"m{n}")
        stub, admin_channel, token = admin_stub(uc1)
        await stub.MoveUser(
            admin_pb.MoveUserRequest(user_id=system.users["alice"], target_server_id="uc-2"),
            metadata=auth(token),
        )
        for n in range(10, 20):
            await send(chat, bob.session_token, conversation, f"m{n}")
            sent.append(f"m{n}")
    redirected = await reader.next(Redirected)
    assert redirected.server.server_id == "uc-2"
    await reader.next(MessageCreated, lambda e: e.text == "m19", timeout=10)
    await reader.quiet(0.3)
    assert [e.text for e in reader.of(MessageCreated)] == sent
    assert client.session is not None
    assert client.session.home_server.server_id == "uc-2"
    assert not reader.of(Resynced)
    await reader.stop()
    await client.close()
    await admin_channel.close()


async def test_a_move_over_mutual_tls(
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    tmp_path: Path,
) -> None:
    system = await start_system(
        start_app,
        lambda: fast_settings(make_settings, redis_url),
        HOMES,
        tls_dir=tmp_path / "tls",
    )
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    alice = await login(uc1.address, "alice", system.channel)
    bob = await login(uc2.address, "bob", system.channel)
    conversation = await group_chat(
        uc2.address, bob.session_token, [system.users["alice"]], system.channel
    )
    client = FollowingClient(uc1.address, alice.session_token, system.channel)
    await client.start()
    stub, admin_channel, token = admin_stub(uc1, system.channel)
    sent = set()
    async with system.channel(uc2.address) as channel:
        chat = chat_grpc.ChatServiceStub(channel)
        for n in range(6):
            if n == 3:
                reply = await stub.MoveUser(
                    admin_pb.MoveUserRequest(
                        user_id=system.users["alice"], target_server_id="uc-2"
                    ),
                    metadata=auth(token),
                )
                assert reply.redirected_sessions == 1
            await send(chat, bob.session_token, conversation, f"t{n}")
            sent.add(f"t{n}")
    await client.wait_for(sent)
    await asyncio.sleep(0.2)
    client.check_exactly_once(sent)
    assert client.resumed == 1 and client.address == uc2.address
    await client.close()
    await admin_channel.close()
