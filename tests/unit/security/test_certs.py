"""``procall certs``: one CA, one identity per certificate, private keys kept private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from procall.security import ensure_ca, issue, parse_spiffe_id, spiffe_id


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_certificate_names_exactly_one_identity_and_verifies_against_the_ca(
    tmp_path: Path,
) -> None:
    ca = ensure_ca(tmp_path / "tls")
    issued = issue(ca, "ucserver", "uc-1")
    cert = x509.load_pem_x509_certificate(issued.cert_file.read_bytes())
    cert.verify_directly_issued_by(ca.certificate)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://procall/ucserver/uc-1"
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"


def test_keys_are_private_and_issuing_again_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    ca = ensure_ca(folder)
    issued = issue(ca, "lookup", "lookup-1")
    assert _mode(folder) == 0o700
    assert _mode(ca.key_file) == 0o600 and _mode(issued.key_file) == 0o600
    before = (ca.cert_file.read_bytes(), issued.cert_file.read_bytes())
    again = issue(ensure_ca(folder), "lookup", "lookup-1")
    assert (ca.cert_file.read_bytes(), again.cert_file.read_bytes()) == before


def test_a_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    stranger = issue(ensure_ca(tmp_path / "other"), "media", "m-1", folder)
    ca = ensure_ca(folder)
    mine = issue(ca, "media", "m-1")
    assert mine.cert_file == stranger.cert_file
    x509.load_pem_x509_certificate(mine.cert_file.read_bytes()).verify_directly_issued_by(
        ca.certificate
    )


@pytest.mark.parametrize(
    ("role", "server_id"), [("admin", "x"), ("ucserver", "a/b"), ("ucserver", ""), ("lookup", "..")]
)
def test_bad_roles_and_ids_are_refused(role: str, server_id: str) -> None:
    with pytest.raises(ValueError):
        spiffe_id(role, server_id)


def test_only_our_identities_parse() -> None:
    assert parse_spiffe_id(b"spiffe://procall/media/m-1") == ("media", "m-1")
    for other in ("spiffe://other/media/m-1", "spiffe://procall/media/m-1/x", "https://procall"):
        assert parse_spiffe_id(other) is None
