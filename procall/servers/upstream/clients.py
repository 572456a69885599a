"""The clients a UCServer holds to the Directory and the Lookup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.errors import NotFound, Unavailable
from procall.mesh.lookup.v1 import lookup_pb2
from procall.servers.runtime.channels import MeshChannels
from procall.servers.runtime.identity import role_target
from procall.servers.upstream.directory import DirectoryClient
from procall.servers.upstream.health import HealthProbe
from procall.servers.upstream.lookup import LookupClient
from procall.session.ports import AuthenticatedUser
from procall.settings import Settings

__all__ = ["UpstreamClients"]

_WATCH_TOPOLOGY = "/procall.mesh.lookup.v1.LookupService/WatchTopology"
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

    async def authenticate(
        self, username: str, password: str, source: str = ""
    ) -> AuthenticatedUser:
        raise self._error()

    async def may_act_for(self, actor_user_id: str, principal_user_id: str, scope: int) -> bool:
        raise self._error()

    async def address_of(self, server_id: str) -> str | None:
        return None

    async def servers(self, role: int = 0) -> list[lookup_pb2.ServerInfo]:
        return []


class UpstreamClients:
    """gRPC clients of the Directory and the Lookup named in the settings."""

    def __init__(self, settings: Settings, channels: MeshChannels) -> None:
        self._mesh = channels
        self._channels: list[grpc.aio.Channel] = []
        self.directory: DirectoryClient | None = None
        self.lookup: LookupClient | None = None
        #: Whether the Directory answers its health check (None: no Directory configured).
        self.directory_probe: HealthProbe | None = None
        if settings.directory.address:
            channel = self._channel(settings.directory.address, role_target("directory"))
            self.directory = DirectoryClient(channel)
            self.directory_probe = HealthProbe(
                "the Directory", channel, settings.lookup.heartbeat_interval
            )
        if settings.lookup.address:
            lookup = role_target("lookup")
            self.lookup = LookupClient(
                self._channel(settings.lookup.address, lookup),
                # the long-lived stream proves itself per call, without an interceptor
                watch_channel=self._channel(settings.lookup.address, lookup, prove=False),
                watch_metadata=lambda: channels.proof(lookup, _WATCH_TOPOLOGY),
            )
        self._missing_directory = _NotConfigured("Directory")
        self._missing_lookup = _NotConfigured("Lookup")

    @property
    def channels(self) -> MeshChannels:
        """Makes this server's channels to other procall servers."""
        return self._mesh

    def _channel(self, address: str, target: str, *, prove: bool = True) -> grpc.aio.Channel:
        channel = self._mesh.channel(address, target, _CHANNEL_OPTIONS, prove=prove)
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

    async def may_forward(self, actor_user_id: str, principal_user_id: str) -> bool:
        """Whether the Directory grants ``actor`` the calls.forward delegation of ``principal``."""
        directory = self.directory or self._missing_directory
        return await directory.may_act_for(
            actor_user_id, principal_user_id, directory_pb2.DELEGATION_SCOPE_CALLS_FORWARD
        )

    async def may_pick_up(self, actor_user_id: str, target_user_id: str) -> bool:
        """Whether ``actor`` may pick up calls ringing for ``target``: both in one pick-up
        group, or the calls.pickup delegation of ``target``."""
        directory = self.directory
        if directory is None:
            raise self._missing_directory._error()
        groups = await directory.pickup_groups_of(actor_user_id)
        if any(target_user_id in group.member_user_ids for group in groups):
            return True
        return await directory.may_act_for(
            actor_user_id, target_user_id, directory_pb2.DELEGATION_SCOPE_CALLS_PICKUP
        )

    async def group_ids_of(self, user_id: str) -> list[str]:
        """The ids of the user's groups (``GroupsOf`` port; none for an unknown user or
        without a Directory)."""
        if self.directory is None:
            return []
        try:
            user = await self.directory.get_user(user_id)
        except NotFound:
            return []
        return list(user.group_ids)

    async def unknown_users(self, user_ids: Sequence[str]) -> list[str]:
        """The ids among ``user_ids`` that name no user (``UserDirectory`` port); every id
        is taken as it comes when no Directory is configured (tests of a lone server)."""
        if self.directory is None:
            return []
        found = await _each(self.directory.get_user, user_ids)
        return [u for u, user in zip(user_ids, found, strict=True) if user is None]

    async def user_ids_of(self, usernames: Sequence[str]) -> list[str | None]:
        """The user id of each username, None for a name of no user (``UserDirectory``)."""
        if self.directory is None:
            raise self._missing_directory._error()
        found = await _each(self.directory.get_user_by_name, usernames)
        return [user.user_id if user is not None else None for user in found]

    async def close(self) -> None:
        """Close the channels."""
        for channel in self._channels:
            await channel.close()


async def _each(
    get: Callable[[str], Awaitable[directory_pb2.User]], keys: Sequence[str]
) -> list[directory_pb2.User | None]:
    """``get`` of every key at once: None where it names no user; any other failure (an
    outage) fails the whole lookup."""
    found = await asyncio.gather(*(get(k) for k in keys), return_exceptions=True)
    for result in found:
        if isinstance(result, BaseException) and not isinstance(result, NotFound):
            raise result
    return [None if isinstance(r, BaseException) else r for r in found]
