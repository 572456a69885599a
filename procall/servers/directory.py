"""Composition root of the Directory server (``procall serve directory``)."""

from __future__ import annotations

from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.servers.app import ServerApp, binding, not_yet_served
from procall.settings import Settings

__all__ = ["build_directory"]


async def build_directory(settings: Settings) -> ServerApp:
    """Wire the DirectoryService."""
    services = [
        binding(
            not_yet_served(directory_grpc.DirectoryServiceServicer),
            directory_pb,
            directory_grpc.add_DirectoryServiceServicer_to_server,
            "DirectoryService",
        )
    ]
    return ServerApp("directory", settings, services)
