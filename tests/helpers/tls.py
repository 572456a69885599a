"""Certificates for in-process TLS topologies (a private CA under the test's tmp_path)."""

from __future__ import annotations

from pathlib import Path

import grpc

from procall.security import IssuedCertificate, ensure_ca, issue
from procall.settings import Settings


def certificate(folder: Path, role: str, server_id: str) -> IssuedCertificate:
    """The certificate of ``role``/``server_id`` from the CA in ``folder`` (made on first use)."""
    return issue(ensure_ca(folder), role, server_id)


def use_tls(settings: Settings, folder: Path, role: str, server_id: str) -> Settings:
    """Configure ``settings`` for mutual TLS as ``role``/``server_id`` (both ports on 0)."""
    issued = certificate(folder, role, server_id)
    settings.server.server_id = server_id
    settings.tls.ca_file = str(issued.ca_file)
    settings.tls.cert_file = str(issued.cert_file)
    settings.tls.key_file = str(issued.key_file)
    settings.tls.mesh_port = 0
    return settings


def tls_channel(
    address: str, ca_file: Path | str, client: IssuedCertificate | None = None
) -> grpc.aio.Channel:
    """A channel verifying the server against ``ca_file``, presenting ``client`` if given."""
    ca = Path(ca_file).read_bytes()
    if client is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=client.key_file.read_bytes(),
            certificate_chain=client.cert_file.read_bytes(),
        )
    return grpc.aio.secure_channel(address, credentials)
