"""Composition root of a Lookup server (``procall serve lookup``).

The Lookup is stateless: its whole view lives in Redis (see
``procall.storage.redis.registry``), so any number of Lookups can serve one
Redis. Each runs a background sweep that announces registrations whose TTL
passed; the sweeps of several Lookups never announce a departure twice.
"""

from __future__ import annotations

import asyncio

from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.routing.service import RoutingService
from procall.servers.lookup.servicer import LookupServicer
from procall.servers.runtime.app import ServerApp, StartupError, binding, ensure_server_id
from procall.servers.runtime.channels import MeshChannels
from procall.servers.runtime.identity import mesh_auth_required
from procall.servers.upstream.directory import GrpcHomeDirectory
from procall.settings import Settings
from procall.storage.lookup import open_lookup_stores
from procall.storage.redis import RedisUnavailableError
from procall.tasks import stop_task

__all__ = ["build_lookup", "sweep_interval"]


def sweep_interval(ttl: float) -> float:
    """How often to look for lapsed registrations: a quarter of the TTL, 50 ms to 1 s.

    A departure is thus announced at most about a quarter TTL after it happened.
    """
    return min(1.0, max(0.05, ttl / 4))


async def build_lookup(settings: Settings) -> ServerApp:
    """Wire the LookupService; the routing view lives in Redis, which must answer."""
    lookup = settings.lookup
    interval = sweep_interval(lookup.heartbeat_ttl)
    try:
        stores = await open_lookup_stores(settings, interval)
    except RedisUnavailableError as exc:
        raise StartupError(str(exc)) from None
    directory = (
        GrpcHomeDirectory(
            settings.directory.address,
            channels=MeshChannels(settings, "lookup", ensure_server_id(settings, "lookup")),
            timeout=lookup.directory_timeout,
        )
        if settings.directory.address
        else None
    )
    service = RoutingService(
        stores.servers,
        stores.media,
        stores.homes,
        directory,
        ttl=lookup.heartbeat_ttl,
        home_cache_ttl=lookup.home_cache_ttl,
    )
    sweeper: asyncio.Task[None] | None = None

    async def start_sweeper(_: ServerApp) -> None:
        nonlocal sweeper
        sweeper = asyncio.get_running_loop().create_task(
            service.sweep_forever(interval), name="lookup sweeper"
        )

    async def stop_sweeper(_: ServerApp) -> None:
        await stop_task(sweeper)

    async def close_clients(_: ServerApp) -> None:
        if directory is not None:
            await directory.close()
        await stores.close()

    services = [
        binding(
            LookupServicer(service, require_identity=mesh_auth_required(settings)),
            lookup_pb,
            lookup_grpc.add_LookupServiceServicer_to_server,
            "LookupService",
        )
    ]
    # stop hooks run in reverse: the sweeper stops first, the clients close last
    return ServerApp(
        "lookup",
        settings,
        services,
        on_start=[start_sweeper],
        on_stop=[close_clients, stop_sweeper],
    )
