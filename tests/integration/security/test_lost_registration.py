"""A server that lost its place in the routing view does not go on reporting SERVING."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.settings import Settings
from tests.helpers.topology import StartApp, operator_channel, wait_for


async def _health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return int(reply.status)


async def test_a_fenced_server_reports_not_serving(
    start_app: StartApp, settings: Callable[[], Settings]
) -> None:
    lookup = await start_app("lookup", settings())
    first_settings = settings()
    first_settings.server.server_id = "media-1"
    first_settings.lookup.address = lookup.mesh_address
    first = await start_app("media", first_settings)
    assert await _health(first.address) == health_pb2.HealthCheckResponse.SERVING

    async def listed_at(address: str) -> bool:
        async with operator_channel(lookup.address, target="lookup") as channel:
            reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
                lookup_pb.ListServersRequest(), timeout=5
            )
        return any(s.server_id == "media-1" and s.address == address for s in reply.servers)

    await wait_for(lambda: listed_at(first.address))
    # a second process under the same id (same credential) takes the registration over
    second_settings = settings()
    second_settings.server.server_id = "media-1"
    second_settings.lookup.address = lookup.mesh_address
    second = await start_app("media", second_settings)

    async def first_out() -> bool:
        return await _health(first.address) == health_pb2.HealthCheckResponse.NOT_SERVING

    await wait_for(first_out)
    assert await listed_at(second.address)
    assert await _health(second.address) == health_pb2.HealthCheckResponse.SERVING


async def test_a_server_the_lookup_refuses_reports_not_serving(
    start_app: StartApp, settings: Callable[[], Settings]
) -> None:
    lookup = await start_app("lookup", settings())
    outsider = settings()
    outsider.auth.service_credential = "not the system's secret"
    outsider.server.server_id = "media-x"
    outsider.lookup.address = lookup.mesh_address
    media = await start_app("media", outsider)

    async def refused() -> bool:
        return await _health(media.address) == health_pb2.HealthCheckResponse.NOT_SERVING

    await wait_for(refused)
    async with operator_channel(lookup.address, target="lookup") as channel:
        reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
            lookup_pb.ListServersRequest(), timeout=5
        )
    assert "media-x" not in {s.server_id for s in reply.servers}
