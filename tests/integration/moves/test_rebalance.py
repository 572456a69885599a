"""Rebalancing after a UCServer was added: 200 connected users on two UCServers spread
evenly over three, every moved session redirected and resumed, and every chat message
sent to them before, during and after the rebalance received exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.settings import Settings
from tests.helpers.topology import (
    StartApp,
    System,
    auth,
    fast_settings,
    login,
    start_system,
    wait_for,
)
from tests.integration.moves.helpers import (
    FollowingClient,
    admin_stub,
    group_chat,
    send,
    wait_operation,
)
from tests.integration.moves.test_drain import homed_on, live_ucservers

USERS = 200
HOMES = [("sender", "uc-1")] + [(f"member{n}", f"uc-{n % 2 + 1}") for n in range(USERS)]


@pytest.fixture
def settings(redis_url: str, make_settings: Callable[..., Settings]) -> Callable[[], Settings]:
    """Settings of every server of the test."""
    return lambda: fast_settings(make_settings, redis_url)


@pytest.fixture
async def system(settings: Callable[[], Settings], start_app: StartApp) -> AsyncIterator[System]:
    yield await start_system(start_app, settings, HOMES)


@pytest.mark.slow
async def test_rebalance_of_200_users_from_two_to_three_servers(
    system: System, start_app: StartApp, settings: Callable[[], Settings]
) -> None:
    uc1 = system.ucservers["uc-1"]
    sender = await login(uc1.address, "sender")
    members = [system.users[f"member{n}"] for n in range(USERS)]
    conversation = await group_chat(uc1.address, sender.session_token, members)
    clients = []
    for n in range(USERS):
        name, home = HOMES[n + 1]
        reply = await login(system.ucservers[home].address, name)
        client = FollowingClient(system.ucservers[home].address, reply.session_token)
        await client.start()
        clients.append(client)

    # a third UCServer joins
    made = settings()
    made.server.server_id = "uc-3"
    made.directory.address = system.directory.mesh_address
    made.lookup.address = system.lookup.mesh_address
    system.ucservers["uc-3"] = await start_app("ucserver", made)

    async def three_live() -> bool:
        return set(await live_ucservers(system)) == {"uc-1", "uc-2", "uc-3"}

    await wait_for(three_live)
    await asyncio.sleep(0.6)  # the peer meshes link up

    sent: set[str] = set()
    async with grpc.aio.insecure_channel(uc1.address) as channel:
        chat = chat_grpc.ChatServiceStub(channel)

        async def burst(prefix: str, count: int, pause: float = 0.0) -> None:
            for n in range(count):
                text = f"{prefix}-{n}"
                await send(chat, sender.session_token, conversation, text)
                sent.add(text)
                await asyncio.sleep(pause)

        await burst("before", 5)
        stub, admin_channel, token = admin_stub(system.ucservers["uc-2"])
        started = time.monotonic()
        reply = await stub.Rebalance(
            admin_pb.RebalanceRequest(moves_per_second=200), metadata=auth(token)
        )
        during = asyncio.create_task(burst("during", 20, pause=0.02))
        done = await wait_operation(stub, token, reply.operation.operation_id)
        elapsed = time.monotonic() - started
        await during
        await burst("after", 5)
    operation = done.operation
    print(f"rebalance: {operation.moved} users moved in {elapsed:.2f} s")
    assert operation.failed == 0
    assert operation.moved == operation.total > 0
    counts = {s: len(await homed_on(system, s)) for s in ("uc-1", "uc-2", "uc-3")}
    even = (USERS + 1) / 3
    assert all(abs(c - even) <= 0.1 * even for c in counts.values()), counts

    async def all_arrived() -> bool:
        return all(sent <= set(c.texts) or c.error is not None for c in clients)

    await wait_for(all_arrived, timeout=60)
    await asyncio.sleep(0.3)
    for client in clients:
        assert client.error is None, client.error
        client.check_exactly_once(sent)
    moved = [c for c in clients if c.redirects]
    # every moved user had one live session (the sender's has no stream)
    sender_moved = "sender" in await homed_on(system, "uc-3")
    assert operation.redirected_sessions == operation.moved == len(moved) + sender_moved
    assert all(c.resumed == c.redirects for c in clients)
    assert {c.address for c in moved} == {system.ucservers["uc-3"].address}
    for client in clients:
        await client.close()
    await admin_channel.close()
