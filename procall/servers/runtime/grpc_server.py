"""The gRPC server every procall process runs.

One place builds the ``grpc.aio`` server with the options sized for many
long-lived streams, the shared interceptors, the standard health service and
reflection, and drains gracefully on shutdown. Role-specific wiring lives in the
composition roots (``directory.py``, ``lookup.py``, ``ucserver.py``, ``media.py``).

With ``[tls]`` the server listens twice, with the same services and interceptors:
the *client port* (``[server] port``, server-only TLS: clients prove themselves
with session tokens, and ``buf curl --cacert`` works) and the *mesh port*
(``[tls] mesh_port``, mutual TLS: only holders of a certificate from the private
CA connect, and their certificate names their role and id). One port cannot do
both: grpc either always asks for a client certificate or never does. Methods
for servers only are refused on the client port because no call there has a
service identity. Without ``[tls]`` there is one plain port, and the mesh address
is the client address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from procall.security.files import InsecureFileError, require_private
from procall.servers.runtime.enforcer import NoTokens, PolicyEnforcer
from procall.servers.runtime.errors import ErrorMappingInterceptor
from procall.settings import ServerSettings, TlsSettings

_log = logging.getLogger(__name__)
#: Seconds beyond the grace period that stopping the gRPC server may take.
_STOP_MARGIN = 5.0

__all__ = ["BindError", "GrpcServer", "ServiceBinding", "server_options"]


class BindError(Exception):
    """The server could not listen on its address (port in use, bad host)."""


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and the generated function that adds it to a server."""

    #: Full service name, e.g. ``procall.api.chat.v1.ChatService``.
    name: str
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]

    def register(self, server: grpc.aio.Server) -> None:
        """Add the servicer to ``server``."""
        self.add_to_server(self.servicer, server)


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """Channel arguments for a server holding thousands of long-lived streams."""
    return [
        # a second server on the same port must fail, not share it silently
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # grpc's default (3000) stalls every client of a restarted server reconnecting at once
        ("grpc.server.max_pending_requests", settings.max_pending_requests),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_pending_requests),
        ("grpc.max_concurrent_streams", 100_000),
        # notice a frozen client or peer within seconds, not the TCP default of minutes
        ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.ping_timeout_ms),
        ("grpc.http2.ping_timeout_ms", settings.ping_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class GrpcServer:
    """A ``grpc.aio`` server with the policy enforcer, health, reflection and graceful
    shutdown."""

    def __init__(
        self,
        settings: ServerSettings,
        services: Sequence[ServiceBinding],
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        enforcer: PolicyEnforcer | None = None,
        tls: TlsSettings | None = None,
        outer: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        """``interceptors`` run inside the policy enforcer and the error mapping (they see the
        verified caller); ``outer`` ones outside everything (they see every call, refused
        ones included: the RPC metrics)."""
        self._settings = settings
        self._tls = tls if tls is not None and tls.enabled else None
        #: Authenticates every call and checks its policy (outermost: before anything else
        #: answers, UNIMPLEMENTED and malformed requests included). Without one given, no
        #: session token is accepted and only mutual-TLS identities prove a service.
        self.enforcer = enforcer or PolicyEnforcer(NoTokens())
        self._services = list(services)
        self._health = health.aio.HealthServicer()
        self._stuck_stop: asyncio.Future[None] | None = None
        self._server = grpc.aio.server(
            interceptors=[*outer, self.enforcer, ErrorMappingInterceptor(), *interceptors],
            options=server_options(settings),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self.port = 0
        #: The mutual-TLS port for other servers (the client port in plain mode).
        self.mesh_port = 0

    @property
    def service_names(self) -> list[str]:
        """Names of the procall services this server exposes."""
        return [s.name for s in self._services]

    @property
    def tls(self) -> bool:
        """Whether the server listens with TLS (a client port and a mesh port)."""
        return self._tls is not None

    def _advertised(self, port: int) -> str:
        host = self._settings.advertise_host or self._settings.host
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"{host}:{port}"

    @property
    def address(self) -> str:
        """``host:port`` clients use to reach this server (valid after ``start``)."""
        return self._advertised(self.port)

    @property
    def mesh_address(self) -> str:
        """``host:port`` other procall servers use (the mutual-TLS port; valid after ``start``)."""
        return self._advertised(self.mesh_port)

    def _bind(self, target: str, credentials: grpc.ServerCredentials | None) -> int:
        try:
            if credentials is None:
                port = self._server.add_insecure_port(target)
            else:
                port = self._server.add_secure_port(target, credentials)
        except RuntimeError:
            raise BindError(f"cannot listen on {target}: address in use or not available") from None
        if port == 0:
            raise BindError(f"cannot listen on {target}: address in use or not available")
        return port

    def _listen(self) -> None:
        host = self._settings.host
        target = f"{host}:{self._settings.port}"
        if self._tls is None:
            self.port = self.mesh_port = self._bind(target, None)
            return
        try:
            require_private(self._tls.key_file, "it is this server's private key")
            ca = Path(self._tls.ca_file).read_bytes()
            cert = Path(self._tls.cert_file).read_bytes()
            key = Path(self._tls.key_file).read_bytes()
        except InsecureFileError as exc:
            raise BindError(str(exc)) from None
        except OSError as exc:
            raise BindError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
        pair = [(key, cert)]
        self.port = self._bind(target, grpc.ssl_server_credentials(pair))
        self.mesh_port = self._bind(
            f"{host}:{self._tls.mesh_port}",
            grpc.ssl_server_credentials(pair, root_certificates=ca, require_client_auth=True),
        )

    async def start(self) -> None:
        """Bind, start serving and report SERVING for every service."""
        for binding in self._services:
            binding.register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        self._listen()
        await self._server.start()
        for name in ["", *self.service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def set_serving(self, serving: bool, service: str = "") -> None:
        """Report a service (or the whole server, ``""``) as SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set(service, status)

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish for ``grace`` seconds, then stop."""
        await self._health.enter_graceful_shutdown()
        grace = self._settings.grace_seconds if grace is None else grace
        # grpc.aio's shutdown has been seen to never finish (nor to heed cancellation) on a
        # loaded machine; the process must still get on with its own shutdown
        stopping = asyncio.ensure_future(self._server.stop(grace))
        done, _ = await asyncio.wait({stopping}, timeout=grace + _STOP_MARGIN)
        if not done:
            _log.warning(
                "the gRPC server did not stop within %.1f s; going on", grace + _STOP_MARGIN
            )
            self._stuck_stop = stopping  # referenced, so that it is not garbage-collected
        else:
            stopping.result()

    async def wait_for_termination(self) -> None:
        """Wait until the server has stopped."""
        await self._server.wait_for_termination()
