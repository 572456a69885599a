"""Two UCServers, two MediaServers, a Directory and a Lookup, with users on both UCServers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.calls import Phone
from tests.helpers.topology import (
    StartApp,
    System,
    fast_settings,
    login,
    start_system,
    wait_for,
)

HOMES = [("alice", "uc-1"), ("bob", "uc-2"), ("carol", "uc-1"), ("dave", "uc-2"), ("erin", "uc-2")]
#: Seconds a call rings in these tests before it ends unanswered.
RING_SECONDS = 3.0


@pytest.fixture
async def system(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> AsyncIterator[System]:
    def settings() -> Settings:
        made = fast_settings(make_settings, redis_url)
        made.calls.ring_seconds = RING_SECONDS
        return made

    yield await start_system(start_app, settings, HOMES)


@pytest.fixture
async def media_servers(
    system: System, redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> dict[str, ServerApp]:
    """Two MediaServers registered with the system's Lookup (media on loopback)."""
    started = {}
    for server_id in ("media-1", "media-2"):
        settings = fast_settings(make_settings, redis_url)
        settings.server.server_id = server_id
        settings.lookup.address = system.lookup.mesh_address
        settings.media.host_addresses = ["127.0.0.1"]
        # both servers run in the test process: its CPU figure would weigh on each at random
        settings.media.cpu_in_load = False
        started[server_id] = await start_app("media", settings)

    async def registered() -> bool:
        async with system.operator_channel(system.lookup) as channel:
            reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
                lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_MEDIA)
            )
        return {s.server_id for s in reply.servers} == set(started)

    await wait_for(registered)
    return started


@pytest.fixture
async def phones(system: System) -> AsyncIterator[Callable[..., object]]:
    """``await phone(name)``: a new logged-on client of a user (of HOMES, or homed on
    ``home``), its stream open."""
    made: list[Phone] = []

    async def phone(name: str, home: str = "") -> Phone:
        home = home or dict(HOMES)[name]
        address = system.ucservers[home].address
        reply = await login(address, name)
        made.append(
            Phone(name, system.users[name], address, reply.session_token, reply.session.session_id)
        )
        welcome = await made[-1].events.open()
        assert welcome.WhichOneof("payload") == "welcome"
        return made[-1]

    yield phone
    for each in made:
        await each.close()
