"""Which procall server is calling: service identity on both sides of a mesh call.

Incoming: ``service_identity(context, method)`` reads the identity a mutual-TLS
client certificate proves (``spiffe://procall/<role>/<id>``, exposed by grpc as
``peer_spiffe_id``). ``ServiceIdentifier`` adds plain mode (no TLS): a caller that
presents the system's shared service credential (``[auth] service_credential``)
is taken for the ``<role>/<id>`` its ``x-procall-service`` header names. Without
a configured credential, plain mode proves nothing.

Outgoing: ``service_channel`` opens a channel whose every call carries this
server's plain-mode proof (``service_metadata``).

Plain mode trusts whoever knows the credential; it protects against outsiders
on the network who do not, not against a peer that leaks it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from procall.servers.runtime.auth import ServiceIdentity

__all__ = [
    "CREDENTIAL_HEADER",
    "SERVICE_HEADER",
    "IdentifyService",
    "ServiceIdentifier",
    "metadata_channel",
    "service_channel",
    "service_identity",
    "service_metadata",
]

#: Metadata key carrying the shared service credential between servers (plain mode).
CREDENTIAL_HEADER = "x-procall-service-credential"
#: Metadata key naming the calling server as ``<role>/<server id>`` (plain mode).
SERVICE_HEADER = "x-procall-service"
_SPIFFE_PREFIX = "spiffe://procall/"

Context = grpc.aio.ServicerContext[Any, Any]
#: Finds the proven service identity of a call (``None``: not a procall server).
IdentifyService = Callable[[Context, str], ServiceIdentity | None]


def _parse(text: str) -> ServiceIdentity | None:
    role, sep, server_id = text.partition("/")
    if not sep or not role or not server_id or "/" in server_id:
        return None
    return ServiceIdentity(role, server_id)


def service_identity(context: Context, method: str) -> ServiceIdentity | None:
    """The identity a verified mutual-TLS client certificate proves, if any."""
    try:
        values = context.auth_context().get("peer_spiffe_id") or ()
    except Exception:  # no transport security: nothing proven
        return None
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if text.startswith(_SPIFFE_PREFIX):
            return _parse(text.removeprefix(_SPIFFE_PREFIX))
    return None


class ServiceIdentifier:
    """``service_identity`` plus plain mode's shared credential (when one is configured)."""

    def __init__(self, credential: str = "") -> None:
        self._credential = credential.encode("utf-8")

    def __call__(self, context: Context, method: str) -> ServiceIdentity | None:
        """The proven identity of the calling server, or ``None``."""
        found = service_identity(context, method)
        if found is not None or not self._credential:
            return found
        named = presented = None
        for key, value in context.invocation_metadata() or ():
            if key == SERVICE_HEADER and isinstance(value, str):
                named = value
            elif key == CREDENTIAL_HEADER and isinstance(value, str):
                presented = value
        if named is None or presented is None:
            return None
        if not hmac.compare_digest(presented.encode("utf-8"), self._credential):
            return None
        return _parse(named)


def service_metadata(role: str, server_id: str, credential: str) -> tuple[tuple[str, str], ...]:
    """The plain-mode proof a server sends on its calls (nothing without a credential)."""
    if not credential:
        return ()
    return ((SERVICE_HEADER, f"{role}/{server_id}"), (CREDENTIAL_HEADER, credential))


def _with_metadata(details: Any, extra: Sequence[tuple[str, str]]) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in extra:
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _Proof:
    """Adds this server's proof to the calls of a channel (one subclass per call kind:
    grpc files a multi-kind interceptor under its first kind only)."""

    def __init__(self, extra: Sequence[tuple[str, str]]) -> None:
        self._extra = tuple(extra)


class _UnaryUnaryProof(_Proof, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_metadata(details, self._extra), request)


class _UnaryStreamProof(_Proof, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_metadata(details, self._extra), request)


class _StreamUnaryProof(_Proof, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_metadata(details, self._extra), requests)


class _StreamStreamProof(_Proof, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_metadata(details, self._extra), requests)


def service_channel(
    address: str,
    *,
    role: str,
    server_id: str,
    credential: str,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to another procall server whose calls prove ``role/server_id``."""
    return metadata_channel(address, service_metadata(role, server_id, credential), options)


def metadata_channel(
    address: str,
    metadata: Sequence[tuple[str, str]],
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel whose every call carries ``metadata`` (a proof, or a session token)."""
    kinds = (_UnaryUnaryProof, _UnaryStreamProof, _StreamUnaryProof, _StreamStreamProof)
    interceptors: list[Any] | None = [kind(metadata) for kind in kinds] if metadata else None
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)
