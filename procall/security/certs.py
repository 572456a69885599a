"""A private CA and the certificates it issues to procall servers (``procall certs``).

Every certificate carries exactly one identity, as the only SAN URI
``spiffe://procall/<role>/<server id>``, beside ``DNS:localhost`` and
``IP:127.0.0.1`` (so that dialling by either name verifies), with both the server
and the client EKU: each server accepts mesh calls and makes them with the same
certificate. grpc exposes that URI to the receiving server as
``auth_context()["peer_spiffe_id"]``, which ``procall.servers.runtime.identity``
turns into the caller's role and id. Keys are ECDSA P-256 (grpc's TLS stack
refuses Ed25519 certificates).

Issuing is idempotent: an existing CA is reused, and a certificate that the CA
issued for the same identity and that is not close to expiry is kept. Every file
is written 0600 (certificates are public, but one rule for every file of a data
dir is easier to check) and the folder is 0700 (``procall.security.files``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from procall.security.files import private_dir, write_private

__all__ = [
    "ROLES",
    "CertificateAuthority",
    "IssuedCertificate",
    "ensure_ca",
    "issue",
    "parse_spiffe_id",
    "spiffe_id",
]

#: Roles a certificate may name; ``operator`` is the local operator's tools.
ROLES = ("directory", "lookup", "ucserver", "media", "web", "operator")
_TRUST_DOMAIN = "procall"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CA_DAYS = 3650
_CERT_DAYS = 825
#: A certificate this close to expiry is issued anew.
_RENEW_BEFORE = dt.timedelta(days=30)


def spiffe_id(role: str, server_id: str) -> str:
    """The SAN URI naming ``role`` and ``server_id``; ValueError for a bad role or id."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    if not _ID.match(server_id):
        raise ValueError(f"server id {server_id!r} must be letters, digits, '.', '_' or '-'")
    return f"spiffe://{_TRUST_DOMAIN}/{role}/{server_id}"


def parse_spiffe_id(value: str | bytes) -> tuple[str, str] | None:
    """``(role, server id)`` of a SAN URI this module wrote; None for anything else."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    prefix = f"spiffe://{_TRUST_DOMAIN}/"
    if not text.startswith(prefix):
        return None
    parts = text[len(prefix) :].split("/")
    if len(parts) != 2 or parts[0] not in ROLES or not _ID.match(parts[1]):
        return None
    return parts[0], parts[1]


@dataclass(frozen=True)
class CertificateAuthority:
    """The private CA: its certificate and key, and the files they are in."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class IssuedCertificate:
    """A server's certificate and key files, and the CA file that verifies its peers."""

    role: str
    server_id: str
    ca_file: Path
    cert_file: Path
    key_file: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ensure_ca(folder: str | Path) -> CertificateAuthority:
    """The CA in ``folder`` (``ca.pem``, ``ca.key``), created when it is not there yet."""
    folder = Path(folder)
    private_dir(folder)
    cert_file, key_file = folder / "ca.pem", folder / "ca.key"
    if cert_file.exists() and key_file.exists():
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not an ECDSA key")
        os.chmod(key_file, 0o600)
        return CertificateAuthority(certificate, loaded, cert_file, key_file)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "procall"),
            x509.NameAttribute(NameOID.COMMON_NAME, "procall private CA"),
        ]
    )
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_file, _key_pem(key))
    write_private(cert_file, certificate.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(certificate, key, cert_file, key_file)


def _still_good(ca: CertificateAuthority, cert_file: Path, key_file: Path, uri: str) -> bool:
    if not (cert_file.exists() and key_file.exists()):
        return False
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        certificate.verify_directly_issued_by(ca.certificate)
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, TypeError, x509.ExtensionNotFound, Exception):
        return False
    uris = sans.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris == [uri] and certificate.not_valid_after_utc - _now() > _RENEW_BEFORE


def issue(
    ca: CertificateAuthority,
    role: str,
    server_id: str,
    folder: str | Path | None = None,
    *,
    hosts: tuple[str, ...] = (),
) -> IssuedCertificate:
    """The certificate of ``role``/``server_id`` in ``folder`` (the CA's when None).

    Files are ``<role>.<server id>.pem`` and ``.key``. ``hosts`` adds DNS names or IP
    addresses others dial this server by (``localhost`` and ``127.0.0.1`` are always in).
    An existing certificate of the same identity issued by ``ca`` is kept.
    """
    uri = spiffe_id(role, server_id)
    folder = Path(folder) if folder is not None else ca.cert_file.parent
    private_dir(folder)
    cert_file = folder / f"{role}.{server_id}.pem"
    key_file = folder / f"{role}.{server_id}.key"
    if _still_good(ca, cert_file, key_file, uri):
        os.chmod(key_file, 0o600)
        return IssuedCertificate(role, server_id, ca.cert_file, cert_file, key_file)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(uri),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "procall"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, server_id),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    write_private(key_file, _key_pem(key))
    write_private(cert_file, certificate.public_bytes(serialization.Encoding.PEM))
    return IssuedCertificate(role, server_id, ca.cert_file, cert_file, key_file)
