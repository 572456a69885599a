"""Where the client and admin commands connect, and with which TLS files, from the flags or
the endpoints.json of a running `procall up`."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from procall.admin._connect import AdminUsageError, DirectoryTarget, admin_target
from procall.client.cli import server_ca_file
from procall.security import ensure_ca, issue


def _data_dir(tmp_path: Path, tls: bool) -> Path:
    data_dir = tmp_path / "dc"
    data_dir.mkdir()
    ca_file = ""
    if tls:
        ca = ensure_ca(data_dir / "tls")
        issue(ca, "operator", "local")
        ca_file = str(ca.cert_file)
    entries = [
        {"name": "directory", "role": "directory", "address": "127.0.0.1:1",
         "mesh_address": "127.0.0.1:2", "ca_file": ca_file, "pid": 1},
        {"name": "ucserver-1", "role": "ucserver", "address": "127.0.0.1:3",
         "mesh_address": "127.0.0.1:4", "ca_file": ca_file, "pid": 2},
    ]  # fmt: skip
    (data_dir / "endpoints.json").write_text(json.dumps(entries))
    return data_dir


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROCALL_DIRECTORY_ADDRESS", "PROCALL_SERVER", "PROCALL_CACERT"):
        monkeypatch.delenv(name, raising=False)


def _target(directory: str | None, data_dir: Path, **flags: Path) -> DirectoryTarget:
    args = argparse.Namespace(
        directory=directory,
        data_dir=data_dir,
        admin_user=None,
        ucserver=None,
        cacert=flags.get("cacert"),
        cert=flags.get("cert"),
        key=flags.get("key"),
    )
    return asyncio.run(admin_target(args))


def _secrets(data_dir: Path) -> None:
    (data_dir / "secrets.json").write_text(json.dumps({"service": "shared"}))


def test_admin_goes_to_the_mesh_address_as_the_operator_under_tls(tmp_path: Path) -> None:
    target = _target(None, _data_dir(tmp_path, tls=True))
    assert target.address == "127.0.0.1:2" and target.credentials is not None
    assert target.signer is None  # the certificate proves the operator


def test_admin_proves_the_operator_with_the_credential_without_tls(tmp_path: Path) -> None:
    data_dir = _data_dir(tmp_path, tls=False)
    with pytest.raises(AdminUsageError, match="no credentials"):
        _target(None, data_dir)
    _secrets(data_dir)
    plain = _target(None, data_dir)
    assert plain.address == "127.0.0.1:1" and plain.credentials is None
    assert plain.signer is not None and plain.signer.role == "operator"
    told = _target("h:9", data_dir)
    assert told.address == "h:9" and told.credentials is None and told.signer is not None
    with pytest.raises(AdminUsageError):
        _target(None, tmp_path / "nowhere")


def test_admin_over_tls_to_a_named_directory_needs_an_operator_certificate(
    tmp_path: Path,
) -> None:
    data_dir = _data_dir(tmp_path, tls=True)
    ca = data_dir / "tls" / "ca.pem"
    with pytest.raises(AdminUsageError, match="--cert and --key"):
        _target("h:9", data_dir, cacert=ca)
    cert, key = data_dir / "tls" / "operator.local.pem", data_dir / "tls" / "operator.local.key"
    target = _target("h:9", data_dir, cacert=ca, cert=cert, key=key)
    assert target.address == "h:9" and target.credentials is not None


def test_the_client_takes_the_ca_from_the_flag_or_endpoints(tmp_path: Path) -> None:
    tls_dir = _data_dir(tmp_path, tls=True)
    assert server_ca_file(None, None, tls_dir) == str(tls_dir / "tls" / "ca.pem")
    assert server_ca_file(Path("/x/ca.pem"), "h:1", None) == "/x/ca.pem"
    assert server_ca_file(None, "h:1", tls_dir) == ""  # --server alone: plaintext
