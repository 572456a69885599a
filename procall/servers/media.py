"""Composition root of a MediaServer (``procall serve media``)."""

from __future__ import annotations

from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.servers.app import ServerApp, binding, not_yet_served
from procall.settings import Settings

__all__ = ["build_media"]


async def build_media(settings: Settings) -> ServerApp:
    """Wire the MediaService."""
    services = [
        binding(
            not_yet_served(media_grpc.MediaServiceServicer),
            media_pb,
            media_grpc.add_MediaServiceServicer_to_server,
            "MediaService",
        )
    ]
    return ServerApp("media", settings, services)
