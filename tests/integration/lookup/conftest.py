"""Fixtures for the Lookup tests: real Lookup servers on port 0 over a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.app import ServerApp
from procall.servers.runtime.identity import PROOF_HEADER, ProofSigner, role_target
from procall.settings import Settings
from tests.helpers.topology import SERVICE_CREDENTIAL

#: Short enough that expiry tests are quick, long enough for a loaded 2-core box.
TTL = 1.0

StartApp = Callable[[str, Settings], Awaitable[ServerApp]]
#: A LookupService stub (``LookupServiceAsyncStub`` exists for type checkers only).
Stub = Any


@pytest.fixture
def lookup_settings(
    redis_url: str, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings of a Lookup (or a registering server) on the test Redis with a 1 s TTL."""

    def make(url: str | None = None) -> Settings:
        settings = make_settings(url or redis_url)
        settings.lookup.heartbeat_ttl = TTL
        settings.lookup.heartbeat_interval = 0.2
        settings.redis.socket_timeout = 0.5
        return settings

    return make


_ROLES = {lookup_pb2.ROLE_UCSERVER: "ucserver", lookup_pb2.ROLE_MEDIA: "media"}


def _as_named_server(details: Any, request: Any) -> Any:
    """``details`` with a proof of the server ``request`` names (a heartbeat's server, a
    deregistration's id), or of a UCServer "tests" for reads: these tests are about
    routing, and the Lookup takes a heartbeat only from the server it names."""
    role, server_id = "ucserver", "tests"
    if isinstance(request, lookup_pb.HeartbeatRequest):
        role, server_id = _ROLES.get(request.server.role, "ucserver"), request.server.server_id
    elif isinstance(request, lookup_pb.DeregisterRequest):
        server_id = request.server_id
        role = "media" if server_id.startswith("media") else "ucserver"
    method = details.method
    method = method.decode() if isinstance(method, bytes) else str(method)
    signer = ProofSigner(SERVICE_CREDENTIAL, role, server_id or "tests")
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(PROOF_HEADER, signer.proof(role_target("lookup"), method))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryAsNamed(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_as_named_server(details, request), request)


class _StreamAsNamed(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_as_named_server(details, request), request)


@pytest.fixture
async def channels() -> AsyncIterator[Callable[[str], Stub]]:
    """Open LookupService stubs (``channels(address)``); channels are closed after the test."""
    opened: list[grpc.aio.Channel] = []

    def stub(address: str) -> Stub:
        channel = grpc.aio.insecure_channel(
            address, interceptors=[_UnaryAsNamed(), _StreamAsNamed()]
        )
        opened.append(channel)
        return lookup_grpc.LookupServiceStub(channel)

    yield stub
    for channel in opened:
        await channel.close()


@pytest.fixture
async def lookup(
    lookup_settings: Callable[..., Settings],
    start_app: StartApp,
    channels: Callable[[str], Stub],
) -> Stub:
    """A stub of one running Lookup."""
    app = await start_app("lookup", lookup_settings())
    return channels(app.address)


def server(
    server_id: str,
    role: int = lookup_pb2.ROLE_UCSERVER,
    *,
    epoch: int = 0,
    load: int = 0,
    capacity: int = 100,
    draining: bool = False,
    address: str | None = None,
) -> lookup_pb2.ServerInfo:
    """A ServerInfo as a registering server sends it."""
    return lookup_pb2.ServerInfo(
        server_id=server_id,
        role=role,  # type: ignore[arg-type]
        address=address or f"127.0.0.1:{abs(hash(server_id)) % 50000 + 10000}",
        epoch=epoch,
        load=load,
        capacity=capacity,
        draining=draining,
    )


async def beat(stub: Stub, info: lookup_pb2.ServerInfo) -> int:
    """Send one heartbeat; the epoch."""
    reply = await stub.Heartbeat(lookup_pb.HeartbeatRequest(server=info), timeout=5)
    return reply.epoch


async def live_ids(stub: Stub, role: int = 0) -> set[str]:
    """Ids of the live servers."""
    reply = await stub.ListServers(lookup_pb.ListServersRequest(role=role), timeout=5)  # type: ignore[arg-type]
    return {s.server_id for s in reply.servers}


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo detail of a failed call."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo in the status")


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 5.0, interval: float = 0.05
) -> float:
    """Wait until ``check()`` is truthy; the seconds it took (fails after ``timeout``)."""
    began = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
