"""Composition root of a Lookup server (``procall serve lookup``)."""

from __future__ import annotations

from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers._redis_hooks import connect_redis
from procall.servers.app import ServerApp, binding, not_yet_served
from procall.settings import Settings

__all__ = ["build_lookup"]


async def build_lookup(settings: Settings) -> ServerApp:
    """Wire the LookupService; the routing view lives in Redis, which must answer."""
    redis = await connect_redis(settings)

    async def close_redis(_: ServerApp) -> None:
        await redis.aclose()

    services = [
        binding(
            not_yet_served(lookup_grpc.LookupServiceServicer),
            lookup_pb,
            lookup_grpc.add_LookupServiceServicer_to_server,
            "LookupService",
        )
    ]
    return ServerApp("lookup", settings, services, on_stop=[close_redis])
