"""Composition root of a MediaServer (``procall serve media``)."""

from __future__ import annotations

from procall.media import Bridges, MediaConfig
from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.routing.models import ServerRole
from procall.routing.registration import CpuGauge, LoadGauge
from procall.servers.media.servicer import MediaServicer
from procall.servers.runtime.app import Hook, ServerApp, binding
from procall.servers.upstream.registration import LookupRegistration
from procall.settings import Settings

__all__ = ["build_media"]


async def build_media(settings: Settings) -> ServerApp:
    """Wire the MediaService (and its registration with the Lookup, when configured)."""
    calls = LoadGauge()  # open bridges (concurrent calls), reported in heartbeats
    config = MediaConfig(host_addresses=tuple(settings.media.host_addresses) or None)
    bridges = Bridges(config, settings.media.capacity, on_count=calls.set)

    async def close_bridges(_: ServerApp) -> None:
        await bridges.close()

    services = [
        binding(
            MediaServicer(bridges),
            media_pb,
            media_grpc.add_MediaServiceServicer_to_server,
            "MediaService",
        )
    ]
    on_start: list[Hook] = []
    on_stop: list[Hook] = [close_bridges]  # stop hooks run in reverse: bridges close last
    if settings.lookup.address:  # registered with the Lookup; deregistered first on stop
        registration = LookupRegistration(
            settings,
            ServerRole.MEDIA,
            settings.media.capacity,
            calls,
            legs=lambda: bridges.load().legs,
            cpu_percent=CpuGauge() if settings.media.cpu_in_load else None,
        )
        on_start.append(registration.on_start)
        on_stop.append(registration.on_stop)
    app = ServerApp("media", settings, services, on_start=on_start, on_stop=on_stop)
    app.metrics.observe("procall.media.calls", "Calls (bridges) this MediaServer carries", calls)
    app.metrics.observe(
        "procall.media.legs", "Call legs (peer connections) on this MediaServer",
        lambda: bridges.load().legs,
    )  # fmt: skip
    return app
