"""Which procall server is calling: mutual TLS, or a per-call proof in plain mode.

**TLS mode** (``[tls]`` configured): the mesh port asks every caller for a
certificate issued by the private CA, and the one SAN URI of that certificate,
``spiffe://procall/<role>/<server id>``, is the caller's identity
(``auth_context()["peer_spiffe_id"]``). The client port never asks for a
certificate, so nothing called there has a service identity.

**Plain mode** (no ``[tls]``, ``[auth] service_credential`` set): servers share a
secret but never send it. Each call carries ``x-procall-service-proof``: the
caller's role and id, the server it meant to call, a timestamp and a random nonce,
with an HMAC-SHA256 under the shared secret over those and the method. The
receiver accepts it only for its own server id (or, for the Lookup and the
Directory that servers dial by configured address, its role), for the method
called, within ``[auth] proof_window_seconds`` of its clock, and once per nonce.
A proof captured by a server that is not its target is useless anywhere else,
and one seen by its target cannot be played again.

What plain mode does **not** protect: nothing is encrypted (anyone on the path
reads tokens, messages and presence), and every holder of the shared secret can
claim any role and id. Use it on a trusted network or for development only;
``procall up`` runs with TLS unless told ``--insecure``.

With neither TLS nor a credential the mesh is open (tests of single components):
no call has a service identity, and the checks that need one are skipped where
the server is told so (``mesh_auth_required``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import inspect
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.experimental

from procall.security.certs import parse_spiffe_id
from procall.servers.runtime.auth import (
    CallerIdentity,
    ServiceIdentity,
    bind_caller,
    current_claims_or_none,
    current_service,
    reset_caller,
)
from procall.settings import Settings

__all__ = [
    "PROOF_HEADER",
    "IdentifyService",
    "ProofSigner",
    "ServiceAuthenticator",
    "ServiceIdentityInterceptor",
    "mesh_auth_required",
    "role_target",
    "service_identity",
]

#: Metadata key of a plain-mode proof.
PROOF_HEADER = "x-procall-service-proof"
_VERSION = "v1"
#: Roles other servers dial by a configured address (not learned from the Lookup): a proof
#: may name the role instead of a server id, since the caller does not know the id.
_DIALLED_BY_ROLE = frozenset({"lookup", "directory"})
#: Nonces remembered per server (a flood of valid proofs cannot grow memory without bound).
_MAX_NONCES = 200_000


@dataclass(frozen=True)
class _Proven:
    identity: ServiceIdentity | None


#: What the interceptor proved for the current call (unset outside an intercepted call).
_PROVEN: ContextVar[_Proven | None] = ContextVar("procall_service_identity", default=None)


#: Finds the proven server identity of a call (None: not a procall server), given the
#: call's context and method; ``service_identity`` and ``ServiceAuthenticator`` are ones.
IdentifyService = Callable[[Any, str], ServiceIdentity | None]


def mesh_auth_required(settings: Settings) -> bool:
    """Whether servers must prove who they are: TLS or a plain-mode credential is configured."""
    return settings.tls.enabled or bool(settings.auth.service_credential)


def role_target(role: str) -> str:
    """The proof target naming any server of ``role`` (for servers dialled by address)."""
    return f"role:{role}"


def _mac(key: bytes, fields: tuple[str, ...]) -> str:
    return hmac.new(key, "|".join(fields).encode("utf-8"), hashlib.sha256).hexdigest()


class ProofSigner:
    """Makes the plain-mode proofs of one server (``role``/``server_id``)."""

    def __init__(self, credential: str, role: str, server_id: str) -> None:
        if not credential:
            raise ValueError("plain-mode proofs need a service credential")
        self._key = credential.encode("utf-8")
        self.role = role
        self.server_id = server_id

    def proof(self, target: str, method: str, now: float | None = None) -> str:
        """The header value for one call of ``method`` on ``target`` (a server id or role)."""
        stamp = str(int((time.time() if now is None else now) * 1000))
        nonce = secrets.token_hex(12)
        fields = (_VERSION, self.role, self.server_id, target, method, stamp, nonce)
        mac = _mac(self._key, fields)
        return ";".join((_VERSION, self.role, self.server_id, target, stamp, nonce, mac))


class ServiceAuthenticator:
    """Tells which procall server made a call to this server (see the module doc)."""

    def __init__(
        self,
        *,
        role: str,
        server_id: str,
        tls: bool,
        credential: str = "",
        window: float = 30.0,
    ) -> None:
        self._role = role
        self._server_id = server_id
        self._tls = tls
        self._key = credential.encode("utf-8")
        self._window = window
        self._targets = {server_id}
        if role in _DIALLED_BY_ROLE:
            self._targets.add(role_target(role))
        # nonces seen, and the same in the order they expire (the window is fixed)
        self._nonces: dict[str, float] = {}
        self._expiries: deque[tuple[float, str]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings, role: str, server_id: str) -> ServiceAuthenticator:
        """The authenticator of a server of ``role``/``server_id`` configured by ``settings``."""
        return cls(
            role=role,
            server_id=server_id,
            tls=settings.tls.enabled,
            credential=settings.auth.service_credential,
            window=settings.auth.proof_window_seconds,
        )

    def __call__(self, context: Any, method: str) -> ServiceIdentity | None:
        """The calling server of the current call, proven once per call (an ``IdentifyService``).

        The result is kept in a context variable of the call's task (each RPC runs in
        its own task), so the interceptor and the policy enforcer may both ask.
        """
        proven = _PROVEN.get()
        if proven is not None:
            return proven.identity
        identity = self.identify(context, method)
        _PROVEN.set(_Proven(identity))
        return identity

    def may_prove(self, details: grpc.HandlerCallDetails) -> bool:
        """Whether a call can prove a server identity at all (cheap: metadata only)."""
        if self._tls:
            return True  # only the handler's context shows the certificate
        if not self._key:
            return False
        return any(key == PROOF_HEADER for key, _ in details.invocation_metadata or ())

    def identify(self, context: Any, method: str) -> ServiceIdentity | None:
        """The calling server's identity, or None when the call does not prove one."""
        if self._tls:
            return _from_certificate(context)
        if not self._key:
            return None
        for key, value in context.invocation_metadata() or ():
            if key == PROOF_HEADER and isinstance(value, str):
                return self.check_proof(value, method)
        return None

    def check_proof(
        self, value: str, method: str, now: float | None = None
    ) -> ServiceIdentity | None:
        """The identity a plain-mode proof shows for a call of ``method``; None if it fails."""
        parts = value.split(";")
        if len(parts) != 7 or parts[0] != _VERSION:
            return None
        version, role, server_id, target, stamp, nonce, mac = parts
        if target not in self._targets or not stamp.isdigit() or not (16 <= len(nonce) <= 64):
            return None
        now = time.time() if now is None else now
        if abs(now - int(stamp) / 1000) > self._window:
            return None
        expected = _mac(self._key, (version, role, server_id, target, method, stamp, nonce))
        if not hmac.compare_digest(expected, mac):
            return None
        if not self._remember(nonce, now):
            return None
        if not role or not server_id:
            return None
        return ServiceIdentity(role=role, server_id=server_id)

    def _remember(self, nonce: str, now: float) -> bool:
        """Record ``nonce``; False when it was seen within the window (a replay).

        A nonce is kept for twice the window: by then a proof carrying it is too old
        to be taken anyway.
        """
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, old = expiries.popleft()
            if self._nonces.get(old, now + 1) <= now:
                del self._nonces[old]
        if nonce in self._nonces:
            return False
        if len(self._nonces) >= _MAX_NONCES:
            return False  # refuse rather than forget nonces that could be replayed
        expiry = now + 2 * self._window
        self._nonces[nonce] = expiry
        expiries.append((expiry, nonce))
        return True


def _from_certificate(context: Any) -> ServiceIdentity | None:
    try:
        values: list[bytes] = list(context.auth_context().get("peer_spiffe_id") or ())
    except (AttributeError, RuntimeError):
        return None
    if len(values) != 1:
        return None
    parsed = parse_spiffe_id(values[0])
    if parsed is None:
        return None
    return ServiceIdentity(role=parsed[0], server_id=parsed[1])


def service_identity(context: Any, method: str) -> ServiceIdentity | None:
    """The procall server making the current call, or None (a client, or not proven).

    Inside a server built by ``ServerApp`` this is what the server's
    ``ServiceAuthenticator`` proved for the call (from the certificate, or from the
    plain-mode proof). Where nothing was proven yet it reads the caller's
    certificate only: plain-mode proofs need the server's authenticator.
    """
    proven = _PROVEN.get()
    if proven is not None:
        return proven.identity
    return _from_certificate(context)


Behavior = Callable[..., Any]


def _bind_if_unbound(identity: ServiceIdentity | None, context: Any) -> Token[Any] | None:
    """Bind the proven server for the handler, unless the policy enforcer already bound
    the caller (with a session's claims, which this must not drop)."""
    if current_claims_or_none() is not None or current_service() is not None:
        return None
    return bind_caller(CallerIdentity(service=identity, peer=context.peer() or ""))


class ServiceIdentityInterceptor(grpc.aio.ServerInterceptor):
    """Proves the calling server once per call and binds it for the handler.

    A ``grpc.aio`` interceptor cannot see the TLS peer, so this one wraps each
    handler (keeping its kind: an async generator stays one) and proves the caller
    when the handler runs. The policy enforcer, wherever it sits, reads the same
    result through ``service_identity`` or the ``ServiceAuthenticator`` (a proof is
    checked once per call: checking it twice would see its nonce as a replay).
    """

    def __init__(self, authenticator: ServiceAuthenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not self._authenticator.may_prove(handler_call_details):
            # nothing to prove (a client's call in plain mode, or an open mesh): the
            # handler runs as it is, at no cost, and nobody is a procall server
            return handler
        method: str = handler_call_details.method
        authenticator = self._authenticator

        def wrap(behavior: Behavior) -> Behavior:
            if inspect.isasyncgenfunction(behavior):

                async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                    bound = _bind_if_unbound(authenticator(context, method), context)
                    try:
                        async for reply in behavior(request, context):
                            yield reply
                    finally:
                        if bound is not None:
                            # a generator closed from another context cannot reset it
                            with contextlib.suppress(ValueError):
                                reset_caller(bound)

                return stream

            async def unary(request: Any, context: Any) -> Any:
                bound = _bind_if_unbound(authenticator(context, method), context)
                try:
                    result = behavior(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    return result
                finally:
                    if bound is not None:
                        reset_caller(bound)

            return unary

        return grpc.experimental.wrap_server_method_handler(wrap, handler)  # type: ignore[no-untyped-call]
