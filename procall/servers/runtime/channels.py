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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from procall.security.files import InsecureFileError, require_private
from procall.servers.runtime.app import StartupError
from procall.servers.runtime.identity import PROOF_HEADER, ProofSigner
from procall.settings import Settings

__all__ = ["MeshChannels", "proving_channel"]

ChannelOptions = Sequence[tuple[str, Any]]


class _Details(grpc.aio.ClientCallDetails):
    pass


class _Prover:
    """Adds a proof for ``target`` to the metadata of a call."""

    def __init__(self, signer: ProofSigner, target: str) -> None:
        self._signer = signer
        self._target = target

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        method = details.method
        name = method.decode("ascii") if isinstance(method, bytes) else str(method)
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(PROOF_HEADER, self._signer.proof(self._target, name))
        return _Details(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under the first call kind it implements: one class per kind
class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, prover: _Prover) -> None:
        self._prover = prover

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._prover.details(details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, prover: _Prover) -> None:
        self._prover = prover

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._prover.details(details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, prover: _Prover) -> None:
        self._prover = prover

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._prover.details(details), requests)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, prover: _Prover) -> None:
        self._prover = prover

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._prover.details(details), requests)


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

    @property
    def tls(self) -> bool:
        """Whether channels use mutual TLS."""
        return self._credentials is not None

    def channel(self, address: str, target: str, options: ChannelOptions = ()) -> grpc.aio.Channel:
        """A channel to the server at ``address``.

        ``target`` is the server id it is meant to reach, or ``role_target(role)`` for a
        server dialled by configured address; plain-mode proofs are valid only there.
        """
        if self._credentials is not None:
            return grpc.aio.secure_channel(address, self._credentials, options=list(options))
        if self._signer is None:
            return grpc.aio.insecure_channel(address, options=list(options))
        prover = _Prover(self._signer, target)
        interceptors: list[grpc.aio.ClientInterceptor] = [
            _UnaryUnary(prover),
            _UnaryStream(prover),
            _StreamUnary(prover),
            _StreamStream(prover),
        ]
        return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)
