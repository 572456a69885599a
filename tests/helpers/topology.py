"""An in-process system for integration tests: Directory, Lookup and two UCServers on one
Redis, with users homed on either server, plus small gRPC client helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.tls import tls_channel, use_tls

StartApp = Callable[[str, Settings], Awaitable[ServerApp]]
PASSWORD = "correct horse battery"


def fast_settings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    """Settings for quick tests: short heartbeats, cheap password hashing."""
    settings = make_settings(redis_url)
    settings.auth.token_secret = "integration-test-secret-0123456789"
    settings.auth.service_credential = "service-secret"
    settings.lookup.heartbeat_interval = 0.2
    settings.lookup.heartbeat_ttl = 1.0
    settings.directory.argon2_time_cost = 1
    settings.directory.argon2_memory_kib = 1024
    settings.directory.argon2_parallelism = 1
    return settings


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Poll until ``predicate`` holds (fails the test after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@dataclass
class System:
    """The running servers and the users created in the Directory."""

    directory: ServerApp
    lookup: ServerApp
    ucservers: dict[str, ServerApp]
    users: dict[str, str] = field(default_factory=dict)  # username -> user_id
    #: The private CA's certificate when the system runs with TLS.
    ca_file: Path | None = None

    def channel(self, address: str) -> grpc.aio.Channel:
        """A client's channel to ``address`` (TLS verified by the CA when the system has one)."""
        if self.ca_file is None:
            return grpc.aio.insecure_channel(address)
        return tls_channel(address, self.ca_file)


async def start_system(
    start_app: StartApp,
    settings: Callable[[], Settings],
    homes: Sequence[tuple[str, str]],
    configure_ucserver: Callable[[Settings], None] = lambda s: None,
    tls_dir: Path | None = None,
) -> System:
    """Start the servers and create users ``(username, home server id)``.

    With ``tls_dir`` every server gets a certificate from a CA made there and listens
    with TLS (a client port and a mutual-TLS mesh port); servers dial each other's
    mesh address, clients the client address (``System.channel``).
    """

    def secured(made: Settings, role: str, server_id: str) -> Settings:
        return made if tls_dir is None else use_tls(made, tls_dir, role, server_id)

    directory = await start_app("directory", secured(settings(), "directory", "directory-1"))
    lookup_settings = secured(settings(), "lookup", "lookup-1")
    lookup_settings.directory.address = directory.mesh_address
    lookup = await start_app("lookup", lookup_settings)
    ucservers = {}
    for server_id in sorted({home for _, home in homes}):
        uc = secured(settings(), "ucserver", server_id)
        uc.server.server_id = server_id
        uc.directory.address = directory.mesh_address
        uc.lookup.address = lookup.mesh_address
        configure_ucserver(uc)
        ucservers[server_id] = await start_app("ucserver", uc)
    ca_file = None if tls_dir is None else tls_dir / "ca.pem"
    system = System(directory, lookup, ucservers, ca_file=ca_file)
    async with system.channel(directory.address) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for name, home in homes:
            reply = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(
                        username=name, display_name=name.title(), home_server_id=home
                    ),
                    password=PASSWORD,
                )
            )
            system.users[name] = reply.user.user_id

    async def all_registered() -> bool:
        async with system.channel(lookup.address) as channel:
            reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
                lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
            )
        return {s.server_id for s in reply.servers} == set(ucservers)

    await wait_for(all_registered)
    await asyncio.sleep(0.6)  # the peer meshes refresh their topology every heartbeat interval
    return system


def auth(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying a session token."""
    return (("authorization", f"Bearer {token}"),)


ChannelFor = Callable[[str], grpc.aio.Channel]


async def login(
    address: str, username: str, channel_for: ChannelFor = grpc.aio.insecure_channel
) -> session_pb.LoginResponse:
    """Log in with the test password (``channel_for=system.channel`` for a TLS system)."""
    async with channel_for(address) as channel:
        return await session_grpc.SessionServiceStub(channel).Login(
            session_pb.LoginRequest(username=username, password=PASSWORD, client_name="test")
        )


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo detail of a failed call."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo")


class EventStream:
    """A client's Connect stream, reading events in the background."""

    def __init__(
        self, address: str, token: str, channel_for: ChannelFor = grpc.aio.insecure_channel
    ) -> None:
        self.channel = channel_for(address)
        self.call = session_grpc.SessionServiceStub(self.channel).Connect(metadata=auth(token))
        self.events: asyncio.Queue[session_pb2.Event | grpc.aio.AioRpcError] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> session_pb2.Event:
        """Open the stream; returns the welcome event."""
        await self.call.write(session_pb.ConnectRequest(open=session_pb.OpenStream()))
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
        """The next event."""
        item = await asyncio.wait_for(self.events.get(), timeout)
        if isinstance(item, grpc.aio.AioRpcError):
            raise item
        return item

    async def next_of(self, kind: str, timeout: float = 5) -> session_pb2.Event:
        """The next event whose payload is ``kind`` (others are skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            event = await self.next(max(0.01, left))
            if event.WhichOneof("payload") == kind:
                return event

    def drain(self, kind: str) -> list[session_pb2.Event]:
        """The events of ``kind`` already received (others are dropped)."""
        found = []
        while not self.events.empty():
            item = self.events.get_nowait()
            if isinstance(item, session_pb2.Event) and item.WhichOneof("payload") == kind:
                found.append(item)
        return found

    async def close(self) -> None:
        """Cancel the stream."""
        self.call.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()
