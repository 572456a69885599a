"""``procall client`` argument handling: bad input is one line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from procall.cli import main
from procall.client.cli import ClientCliError, password_for, server_address


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "argv",
    [
        ["client", "--server", "h:1", "login", "bob", "presence", "set", "hungry"],
        ["client", "--server", "h:1", "login", "bob", "presence", "get"],
        ["client", "--server", "h:1", "login", "bob", "contacts", "add"],
        ["client", "--server", "h:1", "login", "bob", "dance"],
        ["client", "--server", "h:1", "login"],
        ["client", "logout"],
    ],
)
def test_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as leaving:
        main(argv)
    assert leaving.value.code == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("procall: error: ")


def test_no_server_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["client", "--data-dir", str(tmp_path), "login", "bob", "--password", "x",
            "contacts", "list"]  # fmt: skip
    assert main(argv) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("procall: error: no server: pass --server")


def test_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["client", "--server", "127.0.0.1:9", "login", "bob", "--password", "x",
            "presence", "get", "u1"]  # fmt: skip
    assert main(argv) == 1
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("procall: error: login at 127.0.0.1:9 failed: UNAVAILABLE")


def test_server_address_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCALL_SERVER", raising=False)
    assert server_address("h:1", tmp_path) == "h:1"
    monkeypatch.setenv("PROCALL_SERVER", "h:2")
    assert server_address(None, None) == "h:2"
    endpoints = [
        {"name": "directory", "role": "directory", "address": "h:3", "pid": 1},
        {"name": "ucserver-1", "role": "ucserver", "address": "h:4", "pid": 2},
        {"name": "ucserver-2", "role": "ucserver", "address": "h:5", "pid": 3},
    ]
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
    assert server_address(None, tmp_path) in {"h:4", "h:5"}  # --data-dir beats the env
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints[:1]))
    with pytest.raises(ClientCliError, match="lists no UCServer"):
        server_address(None, tmp_path)
    (tmp_path / "endpoints.json").write_text("{not json")
    with pytest.raises(ClientCliError, match="cannot read"):
        server_address(None, tmp_path)


def test_password_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(password=None, user="bob")
    monkeypatch.setenv("PROCALL_PASSWORD", "from-env")
    assert password_for(args) == "from-env"
    assert password_for(argparse.Namespace(password="given", user="bob")) == "given"
    monkeypatch.delenv("PROCALL_PASSWORD")
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert password_for(args, prompt=lambda text: f"typed after {text!r}") == (
        "typed after 'password for bob: '"
    )
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(ClientCliError, match="no password"):
        password_for(args)
