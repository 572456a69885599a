"""`procall certs`: the command line over ensure_ca / issue."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from procall.cli import main


def test_certs_makes_a_ca_and_certificates_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tls"
    assert main(["certs", "--dir", str(folder), "ucserver/uc-1", "operator/local"]) == 0
    made = {p.name for p in folder.iterdir()}
    assert made == {
        "ca.pem", "ca.key", "ucserver.uc-1.pem", "ucserver.uc-1.key",
        "operator.local.pem", "operator.local.key",
    }  # fmt: skip
    assert stat.S_IMODE((folder / "ucserver.uc-1.key").stat().st_mode) == 0o600
    ca = (folder / "ca.pem").read_bytes()
    assert main(["certs", "--dir", str(folder), "lookup/lookup-1"]) == 0
    assert (folder / "ca.pem").read_bytes() == ca  # the CA is reused
    assert "lookup/lookup-1" in capsys.readouterr().out


def test_certs_refuses_unknown_roles_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "--dir", str(tmp_path), "wizard/merlin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("procall: error: unknown role 'wizard'") and err.count("\n") == 1
