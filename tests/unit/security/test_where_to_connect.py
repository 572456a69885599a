"""Where the client and admin commands connect, and with which TLS files, from the flags or
the endpoints.json of a running `procall up`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from procall.admin._connect import AdminUsageError, directory_target
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


def test_admin_goes_to_the_mesh_address_as_the_operator_under_tls(tmp_path: Path) -> None:
    target = directory_target(None, _data_dir(tmp_path, tls=True))
    assert target.address == "127.0.0.1:2" and target.credentials is not None


def test_admin_uses_plaintext_without_tls_and_as_told(tmp_path: Path) -> None:
    plain = directory_target(None, _data_dir(tmp_path, tls=False))
    assert plain.address == "127.0.0.1:1" and plain.credentials is None
    assert directory_target("h:9", None).credentials is None
    with pytest.raises(AdminUsageError):
        directory_target(None, tmp_path / "nowhere")


def test_the_client_takes_the_ca_from_the_flag_or_endpoints(tmp_path: Path) -> None:
    tls_dir = _data_dir(tmp_path, tls=True)
    assert server_ca_file(None, None, tls_dir) == str(tls_dir / "tls" / "ca.pem")
    assert server_ca_file(Path("/x/ca.pem"), "h:1", None) == "/x/ca.pem"
    assert server_ca_file(None, "h:1", tls_dir) == ""  # --server alone: plaintext
