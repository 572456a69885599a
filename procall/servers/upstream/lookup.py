"""The Lookup as seen by a UCServer: where the other servers listen."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import grpc

from procall.errors import Unavailable
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.upstream.errors import domain_error

__all__ = ["LookupClient"]


class LookupClient:
    """Calls the LookupService (``ServerLocator`` port)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout: float = 3.0,
        *,
        watch_channel: grpc.aio.Channel | None = None,
        watch_metadata: Callable[[], tuple[tuple[str, str], ...]] = tuple,
    ) -> None:
        """``watch_channel`` (default ``channel``) carries ``WatchTopology`` with the
        metadata ``watch_metadata`` makes per call: a channel whose streaming calls go
        through grpc client interceptors can hang when it is closed mid-stream."""
        self._stub = lookup_grpc.LookupServiceStub(channel)
        self._watch_stub = lookup_grpc.LookupServiceStub(watch_channel or channel)
        self._watch_metadata = watch_metadata
        self._timeout = timeout

    async def servers(
        self, role: lookup_pb2.Role.ValueType = lookup_pb2.ROLE_UNSPECIFIED
    ) -> list[lookup_pb2.ServerInfo]:
        """The live servers, optionally of one role."""
        try:
            reply = await self._stub.ListServers(
                lookup_pb.ListServersRequest(role=role),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, "the Lookup") from None
        return list(reply.servers)

    async def address_of(self, server_id: str) -> str | None:
        """``host:port`` of a live server, or None when it is not live."""
        for server in await self.servers():
            if server.server_id == server_id:
                return server.address
        return None

    async def resolve_home(self, user_id: str) -> str | None:
        """The id of the user's home UCServer; None when the user has none (or is unknown)."""
        try:
            reply = await self._stub.ResolveHome(
                lookup_pb.ResolveHomeRequest(user_id=user_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise domain_error(error, "the Lookup") from None
        return reply.server.server_id or None

    async def allocate_media(
        self, call_id: str, exclude: Sequence[str] = ()
    ) -> lookup_pb2.ServerInfo:
        """The MediaServer of a call (the same one while it lives); ``Unavailable``
        (MEDIA_UNAVAILABLE) when none can take it."""
        try:
            reply = await self._stub.AllocateMediaServer(
                lookup_pb.AllocateMediaServerRequest(call_id=call_id, exclude_server_ids=exclude),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                raise Unavailable(
                    "no MediaServer can carry the call now", reason="MEDIA_UNAVAILABLE",
                    retry_after=2.0,
                ) from None  # fmt: skip
            raise domain_error(error, "the Lookup") from None
        return reply.server

    async def release_media(self, call_id: str) -> None:
        """End a call's MediaServer allocation."""
        try:
            await self._stub.ReleaseMediaServer(
                lookup_pb.ReleaseMediaServerRequest(call_id=call_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, "the Lookup") from None

    async def watch_topology(
        self, role: lookup_pb2.Role.ValueType = lookup_pb2.ROLE_UNSPECIFIED
    ) -> AsyncIterator[lookup_pb2.TopologyChange]:
        """The Lookup's ``WatchTopology`` stream: every live server as JOINED, then each change.

        Ends with ``Unavailable`` (or the mapped error) when the stream breaks; the caller
        watches again and reconciles with ``LookupClient.servers`` for what it missed.
        """
        call = self._watch_stub.WatchTopology(
            lookup_pb.WatchTopologyRequest(role=role), metadata=self._watch_metadata()
        )
        try:
            async for reply in call:
                yield reply.change
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, "the Lookup") from None
        finally:
            call.cancel()
        raise Unavailable.backend("the Lookup")
