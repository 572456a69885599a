"""`procall serve <role>` as a real process; bad input fails in one line."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from procall.launch.redis import RedisProcess, free_port

pytestmark = pytest.mark.system


def _procall(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "procall", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _wait_file(path: Path, process: subprocess.Popen[str], timeout: float = 20) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)
    info: dict[str, str] = json.loads(path.read_text())
    return info


@pytest.mark.parametrize("role", ["directory", "lookup", "ucserver", "media"])
def test_serve_role_until_sigterm(role: str, redis_server: RedisProcess, tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = _procall(
        "serve", role, "--port", "0", "--ready-file", str(ready),
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": redis_server.url,
             "PROCALL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db"},
        cwd=tmp_path,
    )  # fmt: skip
    try:
        info = _wait_file(ready, process)
        assert info["role"] == role
        with grpc.insecure_channel(info["address"]) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def _fails_in_one_line(process: subprocess.Popen[str], expected: str) -> None:
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    lines = stderr.strip().splitlines()
    assert lines, "no error printed"
    assert lines[-1].startswith("procall: error: "), stderr
    assert expected in lines[-1], stderr
    assert "Traceback" not in stderr


def test_unknown_role() -> None:
    _fails_in_one_line(_procall("serve", "mailserver"), "unknown role 'mailserver'")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _fails_in_one_line(
            _procall("serve", "media", "--port", str(port)), f"cannot listen on 127.0.0.1:{port}"
        )


def test_unreadable_config(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    _fails_in_one_line(
        _procall("serve", "media", "--config", str(missing)), f"cannot read config file {missing}"
    )


def test_redis_that_does_not_answer(tmp_path: Path) -> None:
    port = free_port()
    _fails_in_one_line(
        _procall(
            "serve", "lookup", "--port", "0",
            env={"PATH": "/usr/bin:/bin", "REDIS_URL": f"redis://127.0.0.1:{port}/0"},
        ),
        f"Redis at redis://127.0.0.1:{port}/0 does not answer",
    )  # fmt: skip


def test_unknown_command_is_one_line() -> None:
    _fails_in_one_line(_procall("frobnicate"), "invalid choice")


def test_refuses_a_settings_file_with_secrets_that_others_can_read(tmp_path: Path) -> None:
    config = tmp_path / "procall.toml"
    config.write_text('[auth]\nservice_credential = "do-not-share"\n')
    config.chmod(0o644)
    process = _procall("serve", "media", "--port", "0", "--config", str(config))
    _fails_in_one_line(process, f"{config} is accessible by group or others (mode 0644)")

    config.chmod(0o600)  # the fix the message names
    ready = tmp_path / "ready.json"
    process = _procall(
        "serve", "media", "--port", "0", "--config", str(config), "--ready-file", str(ready),
        cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_file(ready, process)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
