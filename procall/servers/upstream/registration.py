"""Registering a UCServer or MediaServer with the Lookup: the gRPC side of the registrar.

``LookupRegistration`` gives a composition root its ``on_start`` / ``on_stop``
hooks: start a ``procall.routing.Registrar`` heartbeating to
``settings.lookup.address`` once the server listens, and deregister it before the
server drains. Composition roots add the hooks only when a Lookup address is
configured, so a server started alone still works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from procall import __version__
from procall.errors import (
    Aborted,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.routing.models import DependencyHealth, HeartbeatAck, ServerInfo, ServerRole
from procall.routing.registration import Registrar, ServerIdentity
from procall.servers.codecs.routing import server_to_proto
from procall.servers.runtime.app import ServerApp
from procall.servers.runtime.channels import MeshChannels, quick_reconnect
from procall.servers.runtime.identity import role_target
from procall.settings import Settings

__all__ = ["GrpcLookupPort", "LookupRegistration", "lookup_channel"]


def lookup_channel(
    address: str, channels: MeshChannels, reconnect_max_ms: int = 1000
) -> grpc.aio.Channel:
    """A channel to a Lookup that reconnects within about a second once it is back.

    grpc's default reconnect backoff grows to two minutes, far longer than a
    registration's TTL; a heartbeat channel must not sit out a Lookup's return.
    The channel proves this server's identity (``channels``): the Lookup takes
    a heartbeat or deregistration only from the server it names.
    """
    return channels.channel(
        address,
        role_target("lookup"),
        quick_reconnect(reconnect_max_ms),
    )


class GrpcLookupPort:
    """The Lookup over gRPC as a ``procall.routing.ports.LookupPort``.

    ABORTED (a stale epoch) becomes ``Aborted``, INVALID_ARGUMENT ``InvalidArgument``
    (with the Lookup's message); every other failure becomes
    ``Unavailable`` naming the Lookup. Each call gives up after ``timeout`` seconds.
    """

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float) -> None:
        self._stub = lookup_grpc.LookupServiceStub(channel)
        self._timeout = timeout

    async def heartbeat(self, server: ServerInfo) -> HeartbeatAck:
        """Send one heartbeat."""
        try:
            response = await self._stub.Heartbeat(
                lookup_pb.HeartbeatRequest(server=server_to_proto(server)), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.ABORTED:
                raise Aborted("the Lookup refused a stale epoch") from err
            if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(err.details() or "the Lookup refused the heartbeat") from err
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(err.details() or "the Lookup refused this server") from err
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated(
                    err.details() or "the Lookup does not know this server"
                ) from err
            raise Unavailable.backend("Lookup") from err
        return HeartbeatAck(epoch=response.epoch, ttl_seconds=float(response.ttl_seconds))

    async def deregister(self, server_id: str, epoch: int) -> None:
        """Remove this run's registration."""
        try:
            await self._stub.Deregister(
                lookup_pb.DeregisterRequest(server_id=server_id, epoch=epoch),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise Unavailable.backend("Lookup") from err


class LookupRegistration:
    """The start and stop hooks that keep a server registered with the Lookup.

    Args:
        settings: the server's settings (``lookup.address``, interval, TTL).
        role: what the server registers as.
        capacity: its declared capacity (sessions or concurrent calls), or a function
            giving it, read when the server registers.
        load: its current load, read at every heartbeat.
        draining / degraded / outbox_depth / legs / cpu_percent / dependencies: the
            server's state, read at every heartbeat.
    """

    def __init__(
        self,
        settings: Settings,
        role: ServerRole,
        capacity: int | Callable[[], int],
        load: Callable[[], int],
        *,
        draining: Callable[[], bool] | None = None,
        degraded: Callable[[], bool] | None = None,
        outbox_depth: Callable[[], int] | None = None,
        legs: Callable[[], int] | None = None,
        cpu_percent: Callable[[], int] | None = None,
        dependencies: Callable[[], Sequence[DependencyHealth]] | None = None,
    ) -> None:
        if not settings.lookup.address:
            raise ValueError("no Lookup address is configured")
        self._settings = settings
        self._role = role
        self._capacity = capacity
        self._load = load
        self._draining = draining
        self._degraded = degraded
        self._outbox_depth = outbox_depth
        self._legs = legs
        self._cpu_percent = cpu_percent
        self._dependencies = dependencies
        self._channel: grpc.aio.Channel | None = None
        self.registrar: Registrar | None = None

    async def on_start(self, app: ServerApp) -> None:
        """Start heartbeating (does not wait for the Lookup: it may be down for now)."""
        lookup = self._settings.lookup
        channels = MeshChannels(self._settings, self._role.value.lower(), app.server_id)
        self._channel = lookup_channel(
            lookup.address, channels, reconnect_max_ms=int(lookup.heartbeat_interval * 1000)
        )
        identity = ServerIdentity(
            server_id=app.server_id,
            role=self._role,
            address=app.address,
            capacity=self._capacity() if callable(self._capacity) else self._capacity,
            version=__version__,
            mesh_address=app.mesh_address,
        )

        async def routable(serving: bool) -> None:
            # out of the routing view (not for a Lookup outage): say so in health
            for service in ["", *app.grpc.service_names]:
                await app.grpc.set_serving(serving, service)

        # a heartbeat slower than half the TTL is as good as lost
        port = GrpcLookupPort(self._channel, timeout=max(0.2, lookup.heartbeat_ttl / 2))
        self.registrar = Registrar(
            port,
            identity,
            load=self._load,
            interval=lookup.heartbeat_interval,
            draining=self._draining,
            degraded=self._degraded,
            outbox_depth=self._outbox_depth,
            legs=self._legs,
            cpu_percent=self._cpu_percent,
            dependencies=self._dependencies,
            on_routable=routable,
        )
        self.registrar.start()

    async def on_stop(self, app: ServerApp) -> None:
        """Deregister (so the server leaves the view at once) and close the channel."""
        if self.registrar is not None:
            await self.registrar.stop()
            self.registrar = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
