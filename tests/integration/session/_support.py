"""Shared parts of the session integration tests: the Center (Directory, Lookup, two
UCServers on a real Redis) and small gRPC client helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import grpc

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
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.topology import (
    PASSWORD,
    StartApp,
    auth,
    error_info,
    fast_settings,
    login,
    wait_for,
)

#: The session tests' names for the shared helpers.
log_in = login
reason_of = error_info


@dataclass
class Center:
    """The running servers and the users created in the Directory."""

    directory: ServerApp
    lookup: ServerApp
    uc1: ServerApp
    uc2: ServerApp
    users: dict[str, str]  # username -> user_id


def center_settings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    """Quick-test settings with a small license pool (the pool tests exhaust it)."""
    settings = fast_settings(make_settings, redis_url)
    settings.auth.license_pool_size = 4
    return settings


async def start_center(
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    configure: Callable[[Settings], None] = lambda s: None,
) -> Center:
    """Start the Directory, a Lookup and UCServers uc-1 and uc-2 (``configure`` adjusts
    every server's settings) and create the users; returns once both are linked."""
    directory_settings = center_settings(make_settings, redis_url)
    configure(directory_settings)
    directory = await start_app("directory", directory_settings)
    lookup_settings = center_settings(make_settings, redis_url)
    configure(lookup_settings)
    lookup_settings.directory.address = directory.address
    lookup = await start_app("lookup", lookup_settings)
    apps = []
    for server_id in ("uc-1", "uc-2"):
        settings = center_settings(make_settings, redis_url)
        configure(settings)
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

    await wait_for(both_registered)
    await asyncio.sleep(0.6)  # the peer mesh refreshes its topology every heartbeat interval
    return Center(directory, lookup, apps[0], apps[1], users)


class Stream:
    """A client's Connect stream, reading events in the background."""

    def __init__(self, address: str, token: str, resume_token: str = "") -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.call = session_grpc.SessionServiceStub(self.channel).Connect(metadata=auth(token))
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

    def drained(self) -> list[session_pb2.Event | grpc.aio.AioRpcError]:
        """What the stream received and nobody read yet (events and a final error)."""
        items = []
        while not self.events.empty():
            items.append(self.events.get_nowait())
        return items

    async def ack(self, sequence: int) -> None:
        await self.call.write(session_pb.ConnectRequest(ack=session_pb.Ack(sequence=sequence)))

    async def close(self) -> None:
        self.call.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()


async def set_presence(
    address: str, token: str, availability: int, note: str = "", user_id: str = ""
) -> presence_pb2.Presence:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await presence_grpc.PresenceServiceStub(channel).SetPresence(
            presence_pb.SetPresenceRequest(user_id=user_id, availability=availability, note=note),
            metadata=auth(token),
        )
    return reply.presence
