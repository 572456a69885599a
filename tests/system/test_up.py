"""`procall up`: a whole DataCenter as real processes; health, reflection, clean stop."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

pytestmark = pytest.mark.system

ROLES = {"redis": 1, "directory": 1, "lookup": 1, "ucserver": 2, "media": 2}


def _start_up(data_dir: Path, *flags: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.Popen(
        [sys.executable, "-m", "procall", "up", "--data-dir", str(data_dir), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_endpoints(data_dir: Path, process: subprocess.Popen[str]) -> list[dict[str, object]]:
    path = data_dir / "endpoints.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1])
        assert time.monotonic() < deadline, "procall up did not come up"
        time.sleep(0.1)
    endpoints: list[dict[str, object]] = json.loads(path.read_text())
    return endpoints


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; only its parent's wait is missing
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _channel(endpoint: dict[str, object]) -> grpc.Channel:
    """A client's channel to ``endpoint``: TLS verified by the CA that endpoints.json names."""
    address = str(endpoint["address"])
    if not endpoint.get("ca_file"):
        return grpc.insecure_channel(address)
    ca = Path(str(endpoint["ca_file"])).read_bytes()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))


def _list_services(endpoint: dict[str, object]) -> set[str]:
    with _channel(endpoint) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        return {s.name for r in replies for s in r.list_services_response.service}


def _assert_private(data_dir: Path) -> None:
    """The data dir and every folder in it 0700, every file 0600: secrets, databases,
    outboxes, logs, endpoints.json."""
    wrong = {}
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir() and mode != 0o700 or path.is_file() and mode != 0o600:
            wrong[str(path.relative_to(data_dir))] = oct(mode)
    assert not wrong, wrong
    names = {p.name for p in data_dir.iterdir()}
    assert {"procall.toml", "secrets.json", "procall.db", "ucserver-1.outbox.sqlite"} <= names


def test_up_runs_a_datacenter_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    # a data dir from before files were private: open folder, a secret others can read
    second_dir.mkdir(mode=0o755)
    second_dir.chmod(0o755)
    keys = {"token_secret": "ab" * 16, "service": "cd" * 16}
    (second_dir / "secrets.json").write_text(json.dumps(keys))
    (second_dir / "secrets.json").chmod(0o644)
    first = _start_up(first_dir)
    # a second run at the same time must not collide (and runs without TLS)
    second = _start_up(second_dir, "--insecure")
    try:
        endpoints = _wait_endpoints(first_dir, first)
        other = _wait_endpoints(second_dir, second)
        counts: dict[str, int] = {}
        for endpoint in endpoints:
            counts[str(endpoint["role"])] = counts.get(str(endpoint["role"]), 0) + 1
        assert counts == ROLES
        addresses = {str(e["address"]) for e in endpoints}
        assert addresses.isdisjoint(str(e["address"]) for e in other)
        _assert_private(first_dir)
        _assert_private(second_dir)

        for endpoint in endpoints + other:
            if endpoint["role"] == "redis":
                continue
            assert bool(endpoint.get("ca_file")) == (endpoint in endpoints)  # TLS by default
            with _channel(endpoint) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, endpoint
            assert any(name.startswith("procall.") for name in _list_services(endpoint)), endpoint
            # each server's metrics, on loopback, where endpoints.json says
            metrics = str(endpoint["metrics_address"])
            assert metrics.startswith("127.0.0.1:"), endpoint
            with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as scraped:
                text = scraped.read().decode()
            assert "procall_event_loop_lag_seconds_count" in text, endpoint
            assert f'service_instance_id="{endpoint["name"]}"' in text, endpoint

        busy = _start_up(first_dir)
        _, busy_err = busy.communicate(timeout=30)
        assert busy.returncode != 0
        assert f"data dir {first_dir} is in use" in busy_err
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=30)
        second.communicate(timeout=30)
    assert first.returncode == 0, err
    assert "Traceback" not in err
    assert "ucserver-2" in out
    pids = [int(str(e["pid"])) for e in endpoints]
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)], "processes left behind"
    assert not (first_dir / "endpoints.json").exists()


def test_up_killed_outright_leaves_no_server(tmp_path: Path) -> None:
    process = _start_up(tmp_path)
    endpoints = _wait_endpoints(tmp_path, process)
    process.kill()
    process.communicate(timeout=10)
    pids = [int(str(e["pid"])) for e in endpoints]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)], "servers outlived a killed procall up"
