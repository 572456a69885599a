"""Draining a UCServer (its users move off by load, it takes no new sessions) and the
users of a dead UCServer getting a live home by load when they log in again."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable

import pytest

from procall.admin import add_admin_parser
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.session.v1 import session_pb2
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.peering.router import EventRouter
from procall.settings import Settings
from tests.helpers.streams import EventStream
from tests.helpers.topology import (
    PASSWORD,
    StartApp,
    System,
    auth,
    fast_settings,
    login,
    start_system,
    wait_for,
)
from tests.integration.moves.helpers import FollowingClient, admin_stub, wait_operation

HOMES = [(f"user{n}", f"uc-{n % 3 + 1}") for n in range(12)]


@pytest.fixture
async def system(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> AsyncIterator[System]:
    yield await start_system(start_app, lambda: fast_settings(make_settings, redis_url), HOMES)


async def homed_on(system: System, server_id: str) -> list[str]:
    """Usernames the Directory homes on ``server_id``."""
    async with system.operator_channel(system.directory) as channel:
        reply = await directory_grpc.DirectoryServiceStub(channel).ListUsers(
            directory_pb.ListUsersRequest(page_size=1000, home_server_id=server_id)
        )
    return sorted(u.username for u in reply.users)


async def live_ucservers(system: System) -> dict[str, lookup_pb2.ServerInfo]:
    """The live UCServers the Lookup lists."""
    async with system.operator_channel(system.lookup) as channel:
        reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
            lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
        )
    return {s.server_id: s for s in reply.servers}


async def test_a_drained_server_ends_with_no_users_and_takes_no_logins(system: System) -> None:
    uc3 = system.ucservers["uc-3"]
    local = [name for name, home in HOMES if home == "uc-3"]
    clients = []
    for name in local:
        reply = await login(uc3.address, name)
        client = FollowingClient(uc3.address, reply.session_token)
        await client.start()
        clients.append(client)
    stub, channel, token = admin_stub(system.ucservers["uc-1"])
    reply = await stub.DrainServer(
        admin_pb.DrainServerRequest(server_id="uc-3", moves_per_second=20), metadata=auth(token)
    )
    assert reply.users_to_move == len(local)
    done = await wait_operation(stub, token, reply.operation.operation_id)
    assert (done.operation.moved, done.operation.failed) == (len(local), 0)
    assert done.operation.redirected_sessions == len(local)
    other, other_channel, other_token = admin_stub(system.ucservers["uc-2"])
    elsewhere = await wait_operation(other, other_token, reply.operation.operation_id)
    assert elsewhere.operation == done.operation  # readable on any UCServer
    await other_channel.close()
    assert await homed_on(system, "uc-3") == []
    # spread by load: the two others end even
    assert len(await homed_on(system, "uc-1")) == len(await homed_on(system, "uc-2")) == 6

    async def redirected() -> bool:
        return all(c.resumed == 1 for c in clients)

    await wait_for(redirected)
    assert {c.address for c in clients} <= {
        system.ucservers["uc-1"].address,
        system.ucservers["uc-2"].address,
    }

    async def heartbeat_says_draining() -> bool:
        return (await live_ucservers(system))["uc-3"].draining

    await wait_for(heartbeat_says_draining)
    # a login there is sent elsewhere; a session there is refused
    again = await login(uc3.address, local[0])
    assert again.session.home_server.server_id in ("uc-1", "uc-2")
    assert not again.is_home_server
    manager = uc3.enforcer.verifier
    assert len(manager.hub) == 0  # type: ignore[attr-defined]
    # until draining ends: then its users may be homed there again
    await stub.DrainServer(
        admin_pb.DrainServerRequest(server_id="uc-3", stop_draining=True), metadata=auth(token)
    )

    async def takes_sessions() -> bool:
        return not (await live_ucservers(system))["uc-3"].draining

    await wait_for(takes_sessions)
    for client in clients:
        await client.close()
    await channel.close()


async def test_users_of_a_dead_server_get_a_live_home_by_load(system: System) -> None:
    await system.ucservers["uc-3"].stop(0)

    async def gone() -> bool:
        return "uc-3" not in await live_ucservers(system)

    await wait_for(gone)
    orphans = [name for name, home in HOMES if home == "uc-3"]
    homes = []
    for name in orphans:
        reply = await login(system.ucservers["uc-1"].address, name)
        home = reply.session.home_server
        assert home.server_id in ("uc-1", "uc-2")
        homes.append(home.server_id)
        stream = EventStream(home.address, reply.session_token)
        welcome = await stream.open()
        assert welcome.welcome.session.home_server.server_id == home.server_id
        await stream.close()
    assert await homed_on(system, "uc-3") == []
    assert set(homes) == {"uc-1", "uc-2"}, "all the orphans went to one server"
    # the new home sticks
    again = await login(system.ucservers["uc-2"].address, orphans[0])
    assert again.session.home_server.server_id == homes[0]


async def test_draining_a_dead_server_rehomes_its_users(system: System) -> None:
    await system.ucservers["uc-3"].stop(0)

    async def gone() -> bool:
        return "uc-3" not in await live_ucservers(system)

    await wait_for(gone)
    stub, channel, token = admin_stub(system.ucservers["uc-1"])
    reply = await stub.DrainServer(
        admin_pb.DrainServerRequest(server_id="uc-3"), metadata=auth(token)
    )
    done = await wait_operation(stub, token, reply.operation.operation_id)
    assert (done.operation.moved, done.operation.redirected_sessions) == (4, 0)
    assert await homed_on(system, "uc-3") == []
    assert len(await homed_on(system, "uc-1")) == len(await homed_on(system, "uc-2")) == 6
    await channel.close()


async def test_a_move_drops_every_servers_cached_home_of_the_user(system: System) -> None:
    uc1 = system.ucservers["uc-1"]
    router = uc1.components["router"]
    assert isinstance(router, EventRouter)
    user_id = system.users["user2"]  # homed on uc-3
    await router.route([user_id], session_pb2.Event())
    assert router.cached_home(user_id) == "uc-3"
    stub, channel, token = admin_stub(system.ucservers["uc-2"])
    await stub.MoveUser(
        admin_pb.MoveUserRequest(user_id=user_id, target_server_id="uc-2"), metadata=auth(token)
    )

    async def forgotten() -> bool:
        return router.cached_home(user_id) is None

    await wait_for(forgotten, timeout=3)
    await router.route([user_id], session_pb2.Event())
    assert router.cached_home(user_id) == "uc-2"
    await channel.close()


async def test_the_admin_cli_moves_rebalances_and_drains(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with system.operator_channel(system.directory) as channel:
        await directory_grpc.DirectoryServiceStub(channel).CreateUser(
            directory_pb.CreateUserRequest(
                user=directory_pb2.User(
                    username="root", display_name="Root", home_server_id="uc-1", admin=True
                ),
                password=PASSWORD,
            )
        )
    monkeypatch.setenv("PROCALL_PASSWORD", PASSWORD)
    parser = argparse.ArgumentParser(prog="procall")
    add_admin_parser(parser.add_subparsers(dest="command", required=True))
    where = ["--user", "root", "--ucserver", system.ucservers["uc-2"].address]

    def run(*argv: str) -> tuple[int, str, str]:
        args = parser.parse_args(["admin", *argv, *where])
        out, err = io.StringIO(), io.StringIO()
        code = args.handler(args, out, err)
        return code, out.getvalue(), err.getvalue()

    code, out, _ = await asyncio.to_thread(run, "move", "user0", "user3", "--to", "uc-2")
    assert (code, out) == (0, "moved 2 users to uc-2; 0 live sessions redirected\n")
    assert "user0" in await homed_on(system, "uc-2")
    code, out, err = await asyncio.to_thread(run, "drain", "uc-3", "--rate", "100", "--json")
    assert code == 0, err
    assert json.loads(out)["done"] and json.loads(out)["moved"] == 4
    assert "[" + "#" * 30 + "] 4/4 moved, 0 failed" in err
    assert await homed_on(system, "uc-3") == []
    code, out, _ = await asyncio.to_thread(run, "rebalance")
    assert code == 0 and out.startswith("rebalance: ")
    code, _, err = await asyncio.to_thread(run, "move", "nobody", "--to", "uc-1")
    assert code == 1 and "NOT_FOUND" in err


async def test_moves_are_paced_by_the_rate(system: System) -> None:
    stub, channel, token = admin_stub(system.ucservers["uc-1"])
    started = asyncio.get_running_loop().time()
    reply = await stub.DrainServer(
        admin_pb.DrainServerRequest(server_id="uc-3", moves_per_second=4), metadata=auth(token)
    )
    seen = set()
    while True:
        progress = await stub.GetMoveOperation(
            admin_pb.GetMoveOperationRequest(operation_id=reply.operation.operation_id),
            metadata=auth(token),
        )
        seen.add(progress.operation.moved)
        if progress.operation.done:
            break
        await asyncio.sleep(0.05)
    elapsed = asyncio.get_running_loop().time() - started
    assert progress.operation.moved == 4
    assert elapsed >= 0.7  # 4 users at 4 per second: one at once, then one every 0.25 s
    assert len(seen - {0, 4}) >= 1, f"no progress between start and end: {seen}"
    await channel.close()
