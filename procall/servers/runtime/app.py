"""A server process: its gRPC server plus the start and stop hooks of its role."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry.metrics import Histogram

from procall.audit import AuditLog
from procall.security.files import InsecureFileError, require_private
from procall.security.keys import KeyFileError, load_signing_key, load_verify_keys
from procall.servers.runtime.enforcer import NoTokens, PolicyEnforcer, TokenChecker
from procall.servers.runtime.grpc_server import GrpcServer, ServiceBinding
from procall.servers.runtime.identity import ServiceAuthenticator, mesh_auth_required
from procall.servers.runtime.overload import LagSampler
from procall.servers.runtime.rpc_metrics import RPC_DURATION, RpcMetricsInterceptor
from procall.servers.runtime.vitals import start_vitals
from procall.session.tokens import TokenSigner, TokenVerifier
from procall.settings import AuthSettings, Settings
from procall.telemetry.metrics import LAG_BUCKETS, SECONDS_BUCKETS, ProcessMetrics

__all__ = [
    "Hook",
    "ServerApp",
    "StartupError",
    "binding",
    "ensure_server_id",
    "not_yet_served",
    "token_signer",
    "token_verifier",
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


def token_verifier(auth: AuthSettings) -> TokenVerifier | None:
    """The verifier of ``[auth] verify_key_file`` (None when unset); ``StartupError`` for a
    file that is missing or holds no Ed25519 public key."""
    if not auth.verify_key_file:
        return None
    try:
        keys = load_verify_keys(auth.verify_key_file)
    except KeyFileError as exc:
        raise StartupError(str(exc)) from None
    return TokenVerifier(keys, issuer=auth.token_issuer, audience=auth.token_audience)


def token_signer(auth: AuthSettings) -> TokenSigner:
    """The signer of ``[auth] signing_key_file`` (also accepting the keys of
    ``verify_key_file``); without a key file, one for this process only."""
    extra = []
    try:
        if auth.verify_key_file:
            extra = load_verify_keys(auth.verify_key_file)
        if not auth.signing_key_file:
            _log.warning("[auth] signing_key_file is not set: tokens work on this one server only")
            return TokenSigner.ephemeral(
                auth.token_ttl_seconds,
                issuer=auth.token_issuer,
                audience=auth.token_audience,
                verify_keys=extra,
            )
        key = load_signing_key(auth.signing_key_file)
        # whoever reads it mints any user's token: refuse it when others may read it
        require_private(auth.signing_key_file, what="it signs the session tokens")
    except (KeyFileError, InsecureFileError) as exc:
        raise StartupError(str(exc)) from None
    return TokenSigner(
        key,
        auth.token_ttl_seconds,
        issuer=auth.token_issuer,
        audience=auth.token_audience,
        verify_keys=extra,
    )


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
        verifier: TokenChecker | None = None,
        audit: AuditLog | None = None,
        lag: LagSampler | None = None,
    ) -> None:
        """``lag``: the process's loop-lag sampler when the role feeds a shedder with it
        (one without listeners otherwise); the app starts and stops it."""
        self.role = role
        #: The server's parts by name, for in-process use (tests, tools run in the process).
        self.components: dict[str, object] = dict(components or {})
        self.settings = settings
        server_id = ensure_server_id(settings, role)
        #: Proves which procall server makes each call to this one (certificate or proof).
        self.authenticator = ServiceAuthenticator.from_settings(settings, role, server_id)
        if not mesh_auth_required(settings):
            _log.warning(
                "%s %s: no [tls] and no [auth] service_credential: no procall server can "
                "prove itself to this one, so calls between servers are refused "
                "(use `procall certs` and [tls])",
                role,
                server_id,
            )
        self.enforcer = PolicyEnforcer(
            verifier or token_verifier(settings.auth) or NoTokens(),
            identify=self.authenticator,
            audit=audit,
        )
        #: The process's metrics (``procall.telemetry.metrics``); roots add what they observe.
        self.metrics = ProcessMetrics(role, server_id, settings.telemetry)
        #: The process's one loop-lag sampler (shedder, metrics, vitals).
        self.lag = lag or LagSampler()
        outer: list[grpc.aio.ServerInterceptor] = []
        if self.metrics.enabled:
            outer.append(RpcMetricsInterceptor(self._rpc_histogram()))
            lag_histogram = self.metrics.histogram(
                "procall.event_loop.lag",
                "How late the event loop ran a timer: the time work waited for the loop",
                "s",
                LAG_BUCKETS,
            )
            self.lag.listen(lag_histogram.record)
        self.grpc = GrpcServer(
            settings.server, services, interceptors, self.enforcer, tls=settings.tls, outer=outer
        )
        self._on_start = list(on_start)
        self._on_stop = list(on_stop)
        self._stopped = False
        self._stuck: list[asyncio.Future[None]] = []

    def _rpc_histogram(self) -> Histogram:
        return self.metrics.histogram(
            RPC_DURATION,
            "Duration of the calls this server answered, by method and status code",
            "s",
            SECONDS_BUCKETS,
        )

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
        start_vitals(self.server_id, self.lag)  # when PROCALL_VITALS_DIR is set
        self.lag.begin()
        try:
            self.metrics.serve()
        except (OSError, ValueError) as exc:
            await self.stop(0)
            raise StartupError(f"cannot serve the metrics: {exc}") from None

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
        await self.lag.stop()
        # a last OTLP push may wait for its endpoint: not on the loop
        await asyncio.to_thread(self.metrics.shutdown)
