"""Fixtures of the security tests: real servers over a real Redis, with TLS or plain proofs;
``secured`` is a running system (Directory, Lookup, one UCServer) with alice, bob and root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.settings import Settings
from tests.helpers.topology import (
    PASSWORD,
    StartApp,
    System,
    auth,
    fast_settings,
    login,
    operator_channel,
    start_system,
)


@dataclass
class Secured:
    """The system, the users' tokens, and a raw channel to the Directory (no credentials)."""

    system: System
    tokens: dict[str, str]
    channel: grpc.aio.Channel

    @property
    def directory(self) -> directory_grpc.DirectoryServiceAsyncStub:
        """The Directory, called with no credentials unless the call adds them."""
        return directory_grpc.DirectoryServiceStub(self.channel)

    def auth(self, name: str) -> tuple[tuple[str, str]]:
        """Call metadata with ``name``'s session token."""
        return auth(self.tokens[name])


@pytest.fixture
async def secured(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> AsyncIterator[Secured]:
    system = await start_system(
        start_app,
        lambda: fast_settings(make_settings, redis_url),
        [("alice", "uc-1"), ("bob", "uc-1")],
    )
    async with operator_channel(system.directory.address) as channel:
        reply = await directory_grpc.DirectoryServiceStub(channel).CreateUser(
            directory_pb.CreateUserRequest(
                user=directory_pb2.User(
                    username="root", display_name="Root", home_server_id="uc-1", admin=True
                ),
                password=PASSWORD,
            )
        )
    system.users["root"] = reply.user.user_id
    address = system.ucservers["uc-1"].address
    tokens = {name: (await login(address, name)).session_token for name in ("alice", "bob", "root")}
    async with grpc.aio.insecure_channel(system.directory.address) as raw:
        yield Secured(system, tokens, raw)


HOMES = [("alice", "uc-1"), ("bob", "uc-2")]


@pytest.fixture
def settings(redis_url: str, make_settings: Callable[..., Settings]) -> Callable[[], Settings]:
    """Quick settings on the test Redis, with the plain-mode credential set."""
    return lambda: fast_settings(make_settings, redis_url)


@pytest.fixture
async def plain_system(start_app: StartApp, settings: Callable[[], Settings]) -> System:
    """Directory, Lookup and UCServers uc-1 and uc-2 in plain mode (per-call proofs)."""
    return await start_system(start_app, settings, HOMES)


@pytest.fixture
async def tls_system(
    start_app: StartApp, settings: Callable[[], Settings], tmp_path: Path
) -> System:
    """The same system with mutual TLS between the servers and TLS for clients."""
    return await start_system(start_app, settings, HOMES, tls_dir=tmp_path / "tls")
