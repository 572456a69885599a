"""A server process: its gRPC server plus the start and stop hooks of its role."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from procall.servers.runtime.grpc_server import GrpcServer, ServiceBinding
from procall.servers.runtime.identity import (
    ServiceAuthenticator,
    ServiceIdentityInterceptor,
    mesh_auth_required,
)
from procall.settings import Settings

__all__ = [
    "Hook",
    "ServerApp",
    "StartupError",
    "binding",
    "ensure_server_id",
    "not_yet_served",
]


class StartupError(Exception):
    """The server cannot start; the message names the problem in one line."""


Hook = Callable[["ServerApp"], Awaitable[None]]


def binding(
    servicer: object,
    descriptor_module: object,
    add_to_server: Callable[..., None],
    service: str,
) -> ServiceBinding:
    """A ``ServiceBinding`` for ``service`` of a generated ``*_service_pb2`` module."""
    descriptor = descriptor_module.DESCRIPTOR  # type: ignore[attr-defined]
    full_name: str = descriptor.services_by_name[service].full_name
    return ServiceBinding(full_name, servicer, add_to_server)


def not_yet_served(servicer_class: Any) -> object:
    """An instance of a generated servicer base, for services a later release implements.

    Every RPC of it raises ``NotImplementedError``, which the error interceptor
    answers with UNIMPLEMENTED naming the method: the contract is visible through
    reflection, and nothing pretends to succeed.
    """
    instance: object = servicer_class()
    return instance


def ensure_server_id(settings: Settings, role: str) -> str:
    """The server id of ``settings``; generates (and stores) one for this run if unset."""
    if not settings.server.server_id:
        settings.server.server_id = f"{role}-{uuid.uuid4().hex[:8]}"
    return settings.server.server_id


_log = logging.getLogger(__name__)
#: Seconds one stop hook may take before shutdown goes on without it.
HOOK_TIMEOUT = 15.0


class ServerApp:
    """One role's server: gRPC plus hooks run after start and before stop."""

    def __init__(
        self,
        role: str,
        settings: Settings,
        services: Sequence[ServiceBinding],
        *,
        on_start: Sequence[Hook] = (),
        on_stop: Sequence[Hook] = (),
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        components: Mapping[str, object] | None = None,
    ) -> None:
        self.role = role
        #: The server's parts by name, for in-process use (tests, tools run in the process).
        self.components: dict[str, object] = dict(components or {})
        self.settings = settings
        server_id = ensure_server_id(settings, role)
        #: Proves which procall server makes each call to this one.
        self.authenticator = ServiceAuthenticator.from_settings(settings, role, server_id)
        if not mesh_auth_required(settings):
            _log.warning(
                "%s %s: no [tls] and no [auth] service_credential: servers are not "
                "authenticated, anyone may register or open peer streams "
                "(use `procall certs` and [tls])",
                role,
                server_id,
            )
        # first after error mapping: the policy enforcer reads what it proved
        proving = ServiceIdentityInterceptor(self.authenticator)
        self.grpc = GrpcServer(
            settings.server, services, [proving, *interceptors], tls=settings.tls
        )
        self._on_start = list(on_start)
        self._on_stop = list(on_stop)
        self._stopped = False
        self._stuck: list[asyncio.Future[None]] = []

    @property
    def address(self) -> str:
        """``host:port`` of the running server."""
        return self.grpc.address

    @property
    def mesh_address(self) -> str:
        """``host:port`` other procall servers dial (the mutual-TLS port with ``[tls]``)."""
        return self.grpc.mesh_address

    @property
    def server_id(self) -> str:
        """The configured server id, or the one generated for this run."""
        return ensure_server_id(self.settings, self.role)

    async def start(self) -> None:
        """Start serving, then run the start hooks (registration, background tasks)."""
        await self.grpc.start()
        try:
            for hook in self._on_start:
                await hook(self)
        except BaseException:
            await self.grpc.stop(0)
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Run the stop hooks in reverse order, then drain and stop the gRPC server.

        Stopping twice is harmless. A hook that does not finish within ``HOOK_TIMEOUT``
        seconds is logged by name and left behind, so that shutdown always completes.
        """
        if self._stopped:
            return
        self._stopped = True
        for hook in reversed(self._on_stop):
            running = asyncio.ensure_future(hook(self))
            done, _ = await asyncio.wait({running}, timeout=HOOK_TIMEOUT)
            if not done:
                name = getattr(hook, "__qualname__", repr(hook))
                _log.warning("stop hook %s did not finish in %.0f s; going on", name, HOOK_TIMEOUT)
                self._stuck.append(running)
            else:
                running.result()
        await self.grpc.stop(grace)
