"""Exit codes across the command line: 2 for usage errors only, 1 for runtime failures;
``--data-dir`` (and the address options) wherever a person puts them."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from procall.cli import _build_parser, main
from procall.client._errors import ProcallClientError
from procall.client.cli import _error_line


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    return line


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "switchboard"],
        ["bench", "nope"],
        ["bench", "presence", "--clients", "1"],
        ["bench", "media", "--relays", "procall,nope"],
        ["bench", "media", "--max-calls", "0"],
        ["bench", "calls", "--concurrency", "0"],
        ["bench", "connections", "--clients", "2"],
        ["bench", "connections", "--clients", "100", "--max", "50"],
        ["bench", "media", "--step", "0"],
        ["admin", "users", "frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as leaving:  # argparse
        code = int(leaving.code or 0)
    assert code == 2
    assert _err_line(capsys).startswith("procall: error: ")


def test_no_credentials_given_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["admin", "users", "list", "--directory", "127.0.0.1:9", "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    assert _err_line(capsys).startswith("procall: error: no credentials: pass --user NAME")


def test_no_directory_given_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PROCALL_DIRECTORY_ADDRESS", raising=False)
    assert main(["admin", "users", "list", "--data-dir", str(tmp_path)]) == 2
    assert _err_line(capsys).startswith("procall: error: no Directory address")


def test_an_unreadable_endpoints_file_is_a_runtime_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "endpoints.json").write_text("{not json")
    argv = ["client", "login", "bob", "--password", "x", "contacts", "list",
            "--data-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    assert _err_line(capsys).startswith("procall: error: cannot read ")
    (tmp_path / "endpoints.json").unlink()
    assert main(argv) == 2  # nothing says where the servers are: a usage error
    assert _err_line(capsys).startswith("procall: error: no server: pass --server")


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "users", "show", "nobody", "--directory", "127.0.0.1:9"],
        ["admin", "--directory", "127.0.0.1:9", "users", "list"],
        ["admin", "users", "import", "/nonexistent/users.csv", "--directory", "127.0.0.1:9"],
    ],
)
def test_runtime_failures_exit_1(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secrets.json").write_text('{"service": "an-operator-credential"}')
    assert main([*argv, "--data-dir", str(tmp_path)]) == 1  # the operator's credential given
    line = _err_line(capsys)
    assert line.startswith("procall: error: ") and "Traceback" not in line


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "--data-dir", "D", "users", "list"],
        ["admin", "users", "--data-dir", "D", "list"],
        ["admin", "users", "list", "--data-dir", "D"],
        ["admin", "users", "show", "bob", "--data-dir", "D"],
        ["client", "--data-dir", "D", "login", "bob", "contacts", "list"],
        ["client", "login", "bob", "--data-dir", "D", "contacts", "list"],
        ["client", "login", "bob", "contacts", "list", "--data-dir", "D"],
        ["client", "login", "bob", "presence", "set", "busy", "--data-dir", "D"],
        ["client", "login", "bob", "watch", "--data-dir", "D"],
    ],
)
def test_data_dir_in_every_position(argv: list[str]) -> None:
    assert _build_parser().parse_args(argv).data_dir == Path("D")


def test_an_address_given_early_is_not_reset_later() -> None:
    args = _build_parser().parse_args(["client", "--server", "h:1", "login", "bob", "watch"])
    assert (args.server, args.data_dir) == ("h:1", None)
    args = _build_parser().parse_args(["admin", "--directory", "h:2", "users", "list"])
    assert (args.directory, args.data_dir) == ("h:2", None)


def test_the_error_line_says_when_to_retry() -> None:
    error = ProcallClientError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "too many failed logins", retry_after=29.6
    )
    at = time.mktime((2026, 12, 3, 9, 0, 0, 0, 0, -1))
    assert _error_line(error, now=lambda: at) == (
        "RESOURCE_EXHAUSTED: too many failed logins (try again in 30 s, at 09:00:30)"
    )
    plain = ProcallClientError(grpc.StatusCode.NOT_FOUND, "user 'x' does not exist")
    assert _error_line(plain) == "NOT_FOUND: user 'x' does not exist"
