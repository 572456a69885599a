"""Composition root of a MediaServer (``procall serve media``)."""

from __future__ import annotations

from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.routing.models import ServerRole
from procall.routing.registration import LoadGauge
from procall.servers.runtime.app import Hook, ServerApp, binding, not_yet_served
from procall.servers.upstream.registration import LookupRegistration
from procall.settings import Settings

__all__ = ["build_media"]


async def build_media(settings: Settings) -> ServerApp:
    """Wire the MediaService (and its registration with the Lookup, when configured)."""
    calls = LoadGauge()  # concurrent calls carried, reported in heartbeats
    services = [
        binding(
            not_yet_served(media_grpc.MediaServiceServicer),
            media_pb,
            media_grpc.add_MediaServiceServicer_to_server,
            "MediaService",
        )
    ]
    on_start: list[Hook] = []
    on_stop: list[Hook] = []
    if settings.lookup.address:  # registered with the Lookup; deregistered first on stop
        # the call count grows with the media legs once MediaService is served
        registration = LookupRegistration(
            settings, ServerRole.MEDIA, settings.media.capacity, calls
        )
        on_start.append(registration.on_start)
        on_stop.append(registration.on_stop)
    return ServerApp("media", settings, services, on_start=on_start, on_stop=on_stop)
