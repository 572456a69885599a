"""A real DataCenter in-process for the client tests: Directory, Lookup, UCServers, Redis.

The ``center`` fixture is module-scoped (one center per test module, on the
module's event loop; modules mark their tests ``asyncio(loop_scope="module")``).
A module tunes it with a ``CENTER_AUTH`` dict of ``[auth]`` settings and a
``CENTER_SERVERS`` tuple of UCServer ids. Tests create their own users with
``center.new_user(home)`` so that they do not see each other's presence.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.client import ClientOptions
from procall.launch.redis import RedisProcess
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.app import ServerApp
from procall.servers.runtime.roles import ROLES
from procall.settings import Settings
from tests.helpers.topology import SERVICE_CREDENTIAL, operator_channel, token_key_files

PASSWORD = "correct horse battery"
#: Fast reconnects and acks, so that fault tests take a fraction of a second.
FAST = ClientOptions(backoff_initial=0.05, backoff_max=0.5, ack_interval=0.1)
_names = itertools.count(1)


@dataclass(frozen=True)
class User:
    """A user created for one test."""

    username: str
    user_id: str
    home: str


@dataclass
class Center:
    """The running servers."""

    directory: ServerApp
    lookup: ServerApp
    ucservers: dict[str, ServerApp]
    settings: list[Settings] = field(default_factory=list)

    def address(self, server_id: str) -> str:
        """``host:port`` of a UCServer."""
        return self.ucservers[server_id].address

    async def new_user(self, home: str, *, prefix: str = "user") -> User:
        """A fresh user homed on ``home`` with password ``PASSWORD``."""
        name = f"{prefix}{next(_names)}"
        async with operator_channel(self.directory.address) as channel:
            reply = await directory_grpc.DirectoryServiceStub(channel).CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(
                        username=name, display_name=name.title(), home_server_id=home
                    ),
                    password=PASSWORD,
                )
            )
        return User(name, reply.user.user_id, home)


def _settings(tmp: Path, redis_url: str, auth: dict[str, Any]) -> Settings:
    settings = Settings()
    settings.server.port = 0
    settings.server.grace_seconds = 0.2
    settings.database.url = f"sqlite+aiosqlite:///{tmp / 'procall.db'}"
    settings.redis.url = redis_url
    settings.auth.signing_key_file, settings.auth.verify_key_file = token_key_files()
    settings.auth.service_credential = SERVICE_CREDENTIAL
    settings.lookup.heartbeat_interval = 0.2
    settings.lookup.heartbeat_ttl = 1.0
    settings.directory.argon2_time_cost = 1
    settings.directory.argon2_memory_kib = 1024
    settings.directory.argon2_parallelism = 1
    for key, value in auth.items():
        setattr(settings.auth, key, value)
    return settings


@asynccontextmanager
async def running_center(
    redis_url: str,
    tmp: Path,
    servers: Sequence[str] = ("uc-1", "uc-2"),
    auth: dict[str, Any] | None = None,
) -> AsyncIterator[Center]:
    """Start a Directory, a Lookup and the UCServers; stop them all afterwards."""
    apps: list[ServerApp] = []
    made: list[Settings] = []

    async def start(role: str, configure: Callable[[Settings], None]) -> ServerApp:
        settings = _settings(tmp, redis_url, auth or {})
        configure(settings)
        app = await ROLES[role](settings)
        await app.start()
        apps.append(app)
        made.append(settings)
        return app

    try:
        directory = await start("directory", lambda s: None)

        def near_directory(s: Settings) -> None:
            s.directory.address = directory.address

        lookup = await start("lookup", near_directory)
        ucservers: dict[str, ServerApp] = {}
        for server_id in servers:

            def configure(s: Settings, server_id: str = server_id) -> None:
                near_directory(s)
                s.server.server_id = server_id
                s.lookup.address = lookup.address

            ucservers[server_id] = await start("ucserver", configure)
        await _wait_registered(lookup.address, set(servers))
        await asyncio.sleep(0.6)  # the peer mesh refreshes its topology every heartbeat
        yield Center(directory, lookup, ucservers, made)
    finally:
        stuck = []
        for app in reversed(apps):
            try:
                await asyncio.wait_for(app.stop(0), STOP_TIMEOUT)
            except TimeoutError:
                stuck.append(f"{app.role} {app.server_id}:\n{_task_stacks()}")
        assert not stuck, "servers did not stop in time:\n" + "\n".join(stuck)


#: Seconds a server gets to stop before the fixture reports it (with every task's stack).
STOP_TIMEOUT = 15.0


def _task_stacks() -> str:
    # by hand: print_stack fails on grpc's Cython frames, which have no line number
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"{task!r}\n")
        for frame in task.get_stack(limit=8):
            out.write(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
    return out.getvalue()


async def _wait_registered(lookup: str, expected: set[str], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with operator_channel(lookup, target="lookup") as channel:
        stub = lookup_grpc.LookupServiceStub(channel)
        while True:
            reply = await stub.ListServers(
                lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
            )
            if {s.server_id for s in reply.servers} == expected:
                return
            assert asyncio.get_running_loop().time() < deadline, "UCServers did not register"
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def center(
    request: pytest.FixtureRequest,
    redis_server: RedisProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Center]:
    """The module's DataCenter (see the module doc)."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    servers = getattr(request.module, "CENTER_SERVERS", ("uc-1", "uc-2"))
    auth = getattr(request.module, "CENTER_AUTH", {})
    tmp = tmp_path_factory.mktemp("center")
    async with running_center(redis_server.url, tmp, servers, auth) as running:
        yield running
