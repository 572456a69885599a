"""`procall up` with TLS (the default): the README's `buf curl` lines work as printed, the
client and admin commands find the CA and certificates in the data dir, plaintext is refused,
and the keys are private."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def datacenter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running `procall up` (TLS on); yields its data dir."""
    data_dir = tmp_path_factory.mktemp("up") / "dc"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "procall",
            "up",
            "--data-dir",
            str(data_dir),
            "--media-servers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        path = data_dir / "endpoints.json"
        deadline = time.monotonic() + 90
        while not path.exists():
            if process.poll() is not None:
                raise AssertionError(process.communicate()[1])
            assert time.monotonic() < deadline, "procall up did not come up"
            time.sleep(0.1)
        yield data_dir
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert "Traceback" not in err


def _endpoints(data_dir: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads((data_dir / "endpoints.json").read_text())
    return entries


def _one(data_dir: Path, role: str) -> dict[str, object]:
    return next(e for e in _endpoints(data_dir) if e["role"] == role)


def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Calling a server with `buf curl`", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_readme_buf_curl_lines_work_as_printed(datacenter: Path) -> None:
    variables = {
        "D": str(datacenter),
        "ADDR": str(_one(datacenter, "directory")["address"]),
        "UC": str(_one(datacenter, "ucserver")["address"]),
        "MESH": str(_one(datacenter, "lookup")["mesh_address"]),
    }
    blocks = _readme_blocks()
    assert len(blocks) == 2
    outputs = []
    for block in blocks:
        # the README's placeholder assignments (`ADDR=127.0.0.1:PORT`) are replaced by real values
        lines = [
            line
            for line in block.splitlines()
            if not re.match(r"^[A-Z]+=(127\.0\.0\.1:PORT|\.procall/datacenter)( |$)", line)
        ]
        script = "set -e\n" + "".join(f"{k}={v}\n" for k, v in variables.items())
        script += "\n".join(lines)
        run = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert '"status": "SERVING"' in outputs[0]
    assert "procall.api.directory.v1.DirectoryService/SearchUsers" in outputs[0]
    # alice's token from the UCServer found her in the Directory's phone book
    assert '"username": "alice"' in outputs[0]
    servers = json.loads(outputs[1])["servers"]
    assert {s["role"] for s in servers} == {"ROLE_UCSERVER", "ROLE_MEDIA"}
    assert all(s["meshAddress"] != s["address"] for s in servers)


def test_plaintext_and_certificate_less_mesh_calls_are_refused(datacenter: Path) -> None:
    address = str(_one(datacenter, "ucserver")["address"])
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    mesh = str(_one(datacenter, "lookup")["mesh_address"])
    buf = subprocess.run(
        [str(BIN / "buf"), "curl", "--protocol", "grpc", "--cacert",
         str(datacenter / "tls" / "ca.pem"),
         f"https://{mesh}/procall.mesh.lookup.v1.LookupService/ListServers", "-d", "{}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert buf.returncode != 0  # no client certificate: the handshake fails


def test_client_and_admin_commands_use_the_data_dir_tls(datacenter: Path, tmp_path: Path) -> None:
    def procall(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "procall", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )

    client = procall(
        "client", "--data-dir", str(datacenter), "login", "bob", "--password", "bob-demo",
        "presence", "set", "busy", "--note", "over TLS",
    )  # fmt: skip
    assert client.returncode == 0, client.stderr
    assert "over TLS" in client.stdout
    admin = procall("admin", "users", "list", "--json", "--data-dir", str(datacenter))
    assert admin.returncode == 0, admin.stderr
    assert "alice" in {json.loads(line)["username"] for line in admin.stdout.splitlines()}


def test_keys_and_secrets_are_private(datacenter: Path) -> None:
    tls = datacenter / "tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    keys = sorted(tls.glob("*.key"))
    assert {k.name for k in keys} >= {"ca.key", "operator.local.key", "directory.directory.key"}
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((datacenter / "procall.toml").stat().st_mode) == 0o600
