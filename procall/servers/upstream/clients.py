"""The clients a UCServer holds to the Directory and the Lookup."""

from __future__ import annotations

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.errors import Unavailable
from procall.mesh.lookup.v1 import lookup_pb2
from procall.servers.upstream.directory import DirectoryClient
from procall.servers.upstream.lookup import LookupClient
from procall.session.ports import AuthenticatedUser
from procall.settings import Settings

__all__ = ["UpstreamClients"]

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.http2.ping_timeout_ms", 2_000),
]


class _NotConfigured:
    """Answers for a server this UCServer was not configured to reach."""

    def __init__(self, what: str) -> None:
        self._what = what

    def _error(self) -> Unavailable:
        return Unavailable(
            f"no {self._what} is configured for this UCServer", metadata={"backend": self._what}
        )

    async def authenticate(self, username: str, password: str) -> AuthenticatedUser:
        raise self._error()

    async def may_act_for(self, actor_user_id: str, principal_user_id: str, scope: int) -> bool:
        raise self._error()

    async def address_of(self, server_id: str) -> str | None:
        return None

    async def servers(self, role: int = 0) -> list[lookup_pb2.ServerInfo]:
        return []


class UpstreamClients:
    """gRPC clients of the Directory and the Lookup named in the settings."""

    def __init__(self, settings: Settings) -> None:
        self._channels: list[grpc.aio.Channel] = []
        self.directory: DirectoryClient | None = None
        self.lookup: LookupClient | None = None
        if settings.directory.address:
            self.directory = DirectoryClient(self._channel(settings.directory.address))
        if settings.lookup.address:
            self.lookup = LookupClient(self._channel(settings.lookup.address))
        self._missing_directory = _NotConfigured("Directory")
        self._missing_lookup = _NotConfigured("Lookup")

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._channels.append(channel)
        return channel

    @property
    def authenticator(self) -> DirectoryClient | _NotConfigured:
        """Checks credentials (``Authenticator`` port)."""
        return self.directory or self._missing_directory

    @property
    def locator(self) -> LookupClient | _NotConfigured:
        """Finds live servers (``ServerLocator`` port)."""
        return self.lookup or self._missing_lookup

    async def may_set_presence(self, actor_user_id: str, principal_user_id: str) -> bool:
        """Whether the Directory grants ``actor`` the presence.set delegation of ``principal``."""
        directory = self.directory or self._missing_directory
        return await directory.may_act_for(
            actor_user_id, principal_user_id, directory_pb2.DELEGATION_SCOPE_PRESENCE_SET
        )

    async def close(self) -> None:
        """Close the channels."""
        for channel in self._channels:
            await channel.close()
