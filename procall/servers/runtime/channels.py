"""Every channel from one procall server to another is made here.

With ``[tls]`` a channel verifies the other server against the private CA and
presents this server's certificate (mutual TLS): the receiver learns our role
and id from it. In plain mode the channel adds a fresh proof to every call
(``procall.servers.runtime.identity``) naming the server it is meant for; the
shared credential itself never leaves the process. With neither, channels are
plain and prove nothing.

Servers dial each other's *mesh* address (``ServerInfo.mesh_address``, which asks
for certificates); clients get the client address.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from procall.security.files import InsecureFileError, require_private
from procall.servers.runtime.app import StartupError
from procall.servers.runtime.identity import PROOF_HEADER, ProofSigner
from procall.settings import Settings

__all__ = [
    "ExtraMetadata",
    "MeshChannels",
    "calling_channel",
    "metadata_channel",
    "proofs_for",
    "proving_channel",
]

ChannelOptions = Sequence[tuple[str, Any]]


class _Details(grpc.aio.ClientCallDetails):
    pass


#: Metadata a channel adds to each call (computed per call: a proof is fresh every time).
ExtraMetadata = Callable[[str], Sequence[tuple[str, str]]]


def _method_name(method: str | bytes) -> str:
    return method.decode("ascii") if isinstance(method, bytes) else str(method)


class _Adder:
    """Adds the metadata ``extra`` makes for a call's method to the call."""

    def __init__(self, extra: ExtraMetadata) -> None:
        self._extra = extra

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in self._extra(_method_name(details.method)):
            metadata.add(key, value)
        return _Details(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under the first call kind it implements: one class per kind
class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, adder: _Adder) -> None:
        self._adder = adder

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._adder.details(details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, adder: _Adder) -> None:
        self._adder = adder

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._adder.details(details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, adder: _Adder) -> None:
        self._adder = adder

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._adder.details(details), requests)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, adder: _Adder) -> None:
        self._adder = adder

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._adder.details(details), requests)


def quick_reconnect(max_backoff_ms: int) -> ChannelOptions:
    """Channel options that dial a returning server again within ``max_backoff_ms``.

    grpc's own reconnect backoff grows to two minutes. ``grpc.min_reconnect_backoff_ms`` is,
    despite its name, the time grpc gives one connection attempt: at 100 ms a busy server's
    TLS handshake fails and the channel never connects, so an attempt gets two seconds.
    """
    return (
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 2_000),
        ("grpc.max_reconnect_backoff_ms", max(100, max_backoff_ms)),
    )


def proofs_for(signer: ProofSigner, target: str) -> ExtraMetadata:
    """Per-call metadata carrying a fresh proof of ``signer``'s identity for ``target``."""
    return lambda method: ((PROOF_HEADER, signer.proof(target, method)),)


def calling_channel(
    address: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    extra: ExtraMetadata | None = None,
    options: ChannelOptions = (),
) -> grpc.aio.Channel:
    """An asyncio channel to ``address`` whose every call carries ``metadata`` (a session
    token, say) and what ``extra`` makes for it (a plain-mode proof); TLS with
    ``credentials``."""
    fixed = tuple(metadata)
    interceptors: list[grpc.aio.ClientInterceptor] | None = None
    if fixed or extra is not None:

        def per_call(method: str) -> Sequence[tuple[str, str]]:
            return (*fixed, *(extra(method) if extra is not None else ()))

        adder = _Adder(per_call)
        interceptors = [_UnaryUnary(adder), _UnaryStream(adder), _StreamUnary(adder)]
        interceptors.append(_StreamStream(adder))
    if credentials is not None:
        return grpc.aio.secure_channel(
            address, credentials, options=list(options), interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)


def metadata_channel(
    address: str, metadata: Sequence[tuple[str, str]], options: ChannelOptions = ()
) -> grpc.aio.Channel:
    """A plaintext channel whose every call carries ``metadata`` (a session token)."""
    return calling_channel(address, metadata=metadata, options=options)


class _SyncProver(grpc.UnaryUnaryClientInterceptor):
    """Adds a fresh proof to every unary call of a blocking channel."""

    def __init__(self, signer: ProofSigner, target: str) -> None:
        self._signer = signer
        self._target = target

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = list(details.metadata or ())
        metadata.append((PROOF_HEADER, self._signer.proof(self._target, details.method)))
        return continuation(details._replace(metadata=metadata), request)


def proving_channel(channel: grpc.Channel, signer: ProofSigner, target: str) -> grpc.Channel:
    """A blocking channel whose unary calls prove ``signer``'s identity to ``target``.

    For operator tools in plain mode (``procall up --insecure`` seeding the demo
    directory as ``operator/local``); servers use ``MeshChannels``.
    """
    return grpc.intercept_channel(channel, _SyncProver(signer, target))


class MeshChannels:
    """Makes the channels of one server (``role``/``server_id``) to other procall servers."""

    def __init__(self, settings: Settings, role: str, server_id: str) -> None:
        """Read the TLS files (or the plain-mode credential) of ``settings``.

        Raises ``StartupError`` naming a TLS file that cannot be read or whose key is
        open to other users.
        """
        self.role = role
        self.server_id = server_id
        self._credentials: grpc.ChannelCredentials | None = None
        self._signer: ProofSigner | None = None
        if settings.tls.enabled:
            tls = settings.tls
            try:
                require_private(tls.key_file, "it is this server's private key")
                ca, cert, key = (
                    Path(f).read_bytes() for f in (tls.ca_file, tls.cert_file, tls.key_file)
                )
            except InsecureFileError as exc:
                raise StartupError(str(exc)) from None
            except OSError as exc:
                raise StartupError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
        elif settings.auth.service_credential:
            self._signer = ProofSigner(settings.auth.service_credential, role, server_id)

    def proof(self, target: str, method: str) -> tuple[tuple[str, str], ...]:
        """Metadata proving this server to ``target`` for one call of ``method`` (nothing
        with TLS, where the certificate proves it)."""
        if self._signer is None:
            return ()
        return ((PROOF_HEADER, self._signer.proof(target, method)),)

    @property
    def tls(self) -> bool:
        """Whether channels use mutual TLS."""
        return self._credentials is not None

    def channel(
        self, address: str, target: str, options: ChannelOptions = (), *, prove: bool = True
    ) -> grpc.aio.Channel:
        """A channel to the server at ``address``.

        ``target`` is the server id it is meant to reach, or ``role_target(role)`` for a
        server dialled by configured address; plain-mode proofs are valid only there.
        With ``prove`` False the caller adds ``proof(target, method)`` to its calls itself
        (long-lived streams: grpc's intercepted streaming calls can hang a channel's close).
        """
        extra = proofs_for(self._signer, target) if prove and self._signer is not None else None
        return calling_channel(address, credentials=self._credentials, extra=extra, options=options)
