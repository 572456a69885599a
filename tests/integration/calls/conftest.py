"""Two UCServers, two MediaServers, a Directory and a Lookup, with users on both UCServers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.api.journal.v1 import journal_service_pb2_grpc as journal_grpc
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.streams import EventStream
from tests.helpers.topology import (
    StartApp,
    System,
    auth,
    fast_settings,
    login,
    start_system,
    wait_for,
)

HOMES = [("alice", "uc-1"), ("bob", "uc-2"), ("carol", "uc-1"), ("dave", "uc-2"), ("erin", "uc-2")]
#: Seconds a call rings in these tests before it ends unanswered.
RING_SECONDS = 3.0


class Phone:
    """One logged-on client of a user: stubs on its home server and its event stream."""

    def __init__(self, name: str, user_id: str, address: str, token: str, session: str) -> None:
        self.name = name
        self.user_id = user_id
        self.address = address
        self.session_id = session
        self.metadata = auth(token)
        self.token = token
        self.channel = grpc.aio.insecure_channel(address)
        self.calls = call_grpc.CallServiceStub(self.channel)
        self.journal = journal_grpc.JournalServiceStub(self.channel)
        self.presence = presence_grpc.PresenceServiceStub(self.channel)
        self.events = EventStream(address, token)

    async def call_event(
        self, call_id: str, state: call_pb2.CallState.ValueType, timeout: float = 5
    ) -> call_pb2.Call:
        """The next CallChanged of ``call_id`` in ``state`` (earlier ones are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.events.next_of("call_changed", max(0.01, deadline - loop.time()))
            call = event.call_changed.call
            if call.call_id == call_id and call.state == state:
                return call

    async def place(self, callee: Phone, request_id: str = "") -> call_pb2.Call:
        """Place a call to ``callee``."""
        reply = await self.calls.PlaceCall(
            call_pb.PlaceCallRequest(callee_user_id=callee.user_id, request_id=request_id),
            metadata=self.metadata,
        )
        return reply.call

    async def close(self) -> None:
        """Close the stream and the channel."""
        await self.events.close()
        await self.channel.close()


Dial = Callable[[str], "asyncio.Future[Phone]"]


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
    """``await phone(name)``: a new logged-on client of a user, its stream open."""
    made: list[Phone] = []

    async def phone(name: str) -> Phone:
        home = dict(HOMES)[name]
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


def state_name(call: call_pb2.Call) -> str:
    """The call's state as its enum name."""
    return call_pb2.CallState.Name(call.state)


__all__ = ["RING_SECONDS", "Phone", "session_pb2", "state_name"]
