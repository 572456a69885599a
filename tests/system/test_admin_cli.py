"""`procall admin users ...`, the demo seed and `buf curl` against real Directory processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procall.launch.demo import DEMO_USERS, seed_demo_directory
from procall.security.keys import PRIVATE_KEY_NAME, generate_token_keys, load_signing_key
from procall.servers.runtime.identity import ProofSigner
from procall.session.tokens import TokenSigner

pytestmark = pytest.mark.system

BUF = Path(sys.executable).parent / "buf"
#: The service credential of the test Directory, kept in an operator's data dir ``ops``.
CREDENTIAL = "admin-cli-test-credential"
#: The local operator's proofs (plain mode) for seeding the demo directory.
OPERATOR = ProofSigner(CREDENTIAL, "operator", "local")
CHEAP_HASHES = {
    "PROCALL_DIRECTORY_ARGON2_TIME_COST": "1",
    "PROCALL_DIRECTORY_ARGON2_MEMORY_KIB": "64",
    "PROCALL_DIRECTORY_ARGON2_PARALLELISM": "1",
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCALL_")}
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def _procall(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "procall", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(**env),
        timeout=60,
        check=False,
    )


@pytest.fixture
def directory_address(tmp_path: Path) -> Iterator[str]:
    """A `procall serve directory` process on SQLite (cheap hashes); its address."""
    ready = tmp_path / "directory.json"
    _, verify_key = generate_token_keys(tmp_path / "keys")
    process = subprocess.Popen(
        [sys.executable, "-m", "procall", "serve", "directory", "--port", "0",
         "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(PROCALL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
                 PROCALL_AUTH_SERVICE_CREDENTIAL=CREDENTIAL,
                 PROCALL_AUTH_VERIFY_KEY_FILE=str(verify_key), **CHEAP_HASHES),
    )  # fmt: skip
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "secrets.json").write_text(json.dumps({"service": CREDENTIAL}))
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the Directory did not start"
            time.sleep(0.05)
        yield str(json.loads(ready.read_text())["address"])
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert "Traceback" not in stderr


CSV = (
    "\ufeffusername;display_name;mail;phone_number;department;home_server_id;password;admin\n"
    "alice;Alice Anderson;alice@example.com;+1 555 0101;Sales;ucserver-1;alice-pass-1;yes\n"
    "bob;Bob Brown;bob@example.com;+1 555 0102;Sales;ucserver-1;bob-pass-12;no\n"
    "bad name;Bad;bad@example.com;;;;;\n"
    "carol;Carol Clark;carol@example.com;;Support;ucserver-2;short;\n"
    "dave;Dave Davis;;;Support;ucserver-2;;maybe\n"
    "ALICE;Alice Again;other@example.com;;;;;\n"
    "\n"
    "erin;Erin Evans;erin@example.com;;Support;ucserver-2;erin-pass-1;\n"
)


def test_import_then_list_show_and_set_home(directory_address: str, tmp_path: Path) -> None:
    OPS = ("--data-dir", str(tmp_path / "ops"))  # noqa: N806
    users_csv = tmp_path / "users.csv"
    users_csv.write_text(CSV, encoding="utf-8")
    first = _procall("admin", "users", "import", str(users_csv),
                     "--directory", directory_address, *OPS, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 1, first.stderr  # some rows failed
    assert "created 3, skipped 1 (already exist), failed 3" in first.stdout
    assert "line 4: INVALID_ARGUMENT: user.username" in first.stdout
    assert "line 5: INVALID_ARGUMENT: password: must be at least 8 characters" in first.stdout
    assert "line 6: admin must be true or false" in first.stdout
    assert "import: 6/6 (100%)" in first.stderr  # the progress (stderr is not a terminal)
    again = _procall("admin", "users", "import", str(users_csv),
                     "--directory", directory_address, *OPS, cwd=tmp_path)  # fmt: skip
    assert "created 0, skipped 4 (already exist), failed 3" in again.stdout

    listed = _procall("admin", "users", "list", "--json", "--directory", directory_address, *OPS,
                      cwd=tmp_path)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    users = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [u["username"] for u in users] == ["alice", "bob", "erin"]
    assert users[0]["admin"] is True and "password" not in listed.stdout

    table = _procall("admin", "users", "list", "--home-server", "ucserver-1",
                     "--directory", directory_address, *OPS, cwd=tmp_path)  # fmt: skip
    assert table.stdout.splitlines()[0].split()[:3] == ["USERNAME", "DISPLAY", "NAME"]
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == ["alice", "bob"]

    moved = _procall("admin", "users", "set-home", "alice", "ucserver-2",
                     "--directory", directory_address, *OPS, cwd=tmp_path)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == "alice: home server ucserver-1 -> ucserver-2"
    shown = _procall("admin", "users", "show", "ALICE", "--json",
                     "--directory", directory_address, *OPS, cwd=tmp_path)  # fmt: skip
    alice = json.loads(shown.stdout)
    assert alice["home_server_id"] == "ucserver-2"
    by_id = _procall("admin", "users", "show", alice["user_id"],
                     "--directory", directory_address, *OPS, cwd=tmp_path)  # fmt: skip
    assert "display_name" in by_id.stdout and "Alice Anderson" in by_id.stdout

    missing = _procall("admin", "users", "show", "nobody", "--directory", directory_address, *OPS,
                       cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 1  # a runtime failure; 2 is for usage errors only
    assert missing.stderr.strip() == "procall: error: no user 'nobody'"


def test_commands_find_the_directory_through_the_data_dir(
    directory_address: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "dc"
    data_dir.mkdir()
    nowhere = _procall("admin", "users", "list", "--data-dir", str(data_dir), cwd=tmp_path)
    assert nowhere.returncode == 2
    assert nowhere.stderr.startswith("procall: error: no Directory address")
    assert len(nowhere.stderr.strip().splitlines()) == 1
    (data_dir / "endpoints.json").write_text(
        json.dumps(
            [{"name": "directory", "role": "directory", "address": directory_address, "pid": 1}]
        )  # fmt: skip
    )
    seed_demo_directory(directory_address, proof=OPERATOR)
    no_credential = _procall("admin", "users", "list", "--data-dir", str(data_dir), cwd=tmp_path)
    assert no_credential.returncode == 2
    assert no_credential.stderr.startswith("procall: error: no credentials: pass --user NAME")
    (data_dir / "secrets.json").write_text(json.dumps({"service": CREDENTIAL}))
    listed = _procall("admin", "users", "list", "--data-dir", str(data_dir), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 1 + len(DEMO_USERS)
    for argv in (["--data-dir", str(data_dir), "users", "list"],
                 ["users", "--data-dir", str(data_dir), "list"]):  # fmt: skip
        elsewhere = _procall("admin", *argv, cwd=tmp_path)
        assert elsewhere.stdout == listed.stdout, elsewhere.stderr

    dead = _procall("admin", "users", "list", "--directory", "127.0.0.1:1",
                    "--data-dir", str(data_dir), cwd=tmp_path)  # fmt: skip
    assert dead.returncode == 1
    assert "the Directory at 127.0.0.1:1 does not answer" in dead.stderr
    assert "Traceback" not in dead.stderr


def _buf_curl(
    address: str,
    method: str,
    body: dict[str, object],
    token: str = "",
    tls: tuple[str, str, str] | None = None,
) -> dict[str, object]:
    """Call the Directory with ``buf curl``: with an administrator's session ``token``, or
    (``tls``: CA, certificate, key) with the operator's certificate over mutual TLS."""
    if tls is None:
        transport = ["--http2-prior-knowledge", "-H", f"authorization: Bearer {token}"]
        url = f"http://{address}"
    else:
        ca, cert, key = tls
        transport = ["--cacert", ca, "--cert", cert, "--key", key]
        url = f"https://{address}"
    result = subprocess.run(
        [str(BUF), "curl", "--protocol", "grpc", *transport,
         f"{url}/procall.api.directory.v1.DirectoryService/{method}",
         "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reply: dict[str, object] = json.loads(result.stdout)
    return reply


def _admin_token(tmp_path: Path) -> str:
    """A session token of an administrator, signed with the key the test Directory trusts."""
    signer = TokenSigner(load_signing_key(tmp_path / "keys" / PRIVATE_KEY_NAME), 600)
    token, _ = signer.issue(
        session_id="s-buf", user_id="u-buf", username="buf", home_server_id="", admin=True
    )
    return token


def test_demo_seed_is_idempotent_and_buf_curl_lists_and_searches(
    directory_address: str, tmp_path: Path
) -> None:
    if not BUF.exists():
        pytest.skip("buf is not installed in the venv (pip install buf-bin)")
    logins = seed_demo_directory(directory_address, proof=OPERATOR)
    assert len(logins) == 12 and {home for _, _, home in logins} == {"ucserver-1", "ucserver-2"}
    assert seed_demo_directory(directory_address, proof=OPERATOR) == logins

    token = _admin_token(tmp_path)
    listed = _buf_curl(directory_address, "ListUsers", {"pageSize": 5}, token)
    assert len(listed["users"]) == 5 and listed["nextPageToken"]  # type: ignore[arg-type]
    found = _buf_curl(directory_address, "SearchUsers", {"query": "engineering"}, token)
    names = sorted(u["username"] for u in found["users"])  # type: ignore[attr-defined, union-attr]
    assert names == ["heidi", "ivan", "judy"]
    delegations = _buf_curl(directory_address, "ListDelegations", {}, token)
    assert len(delegations["delegations"]) == 1  # type: ignore[arg-type]
    pickup = _buf_curl(directory_address, "ListPickupGroups", {}, token)
    assert pickup["pickupGroups"][0]["name"] == "Sales pick-up"  # type: ignore[index]


def test_procall_up_seeds_the_demo_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "dc"
    process = subprocess.Popen(
        [sys.executable, "-m", "procall", "up", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        endpoints = data_dir / "endpoints.json"
        while not endpoints.exists():
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "procall up did not come up"
            time.sleep(0.1)
        listed = _procall("admin", "users", "list", "--data-dir", str(data_dir), cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} == {
            u.username for u in DEMO_USERS
        }
        homed = _procall("admin", "users", "list", "--home-server", "ucserver-2",
                         "--data-dir", str(data_dir), cwd=tmp_path)  # fmt: skip
        assert len(homed.stdout.splitlines()) == 1 + 6
        if BUF.exists():
            directory = next(
                e for e in json.loads(endpoints.read_text()) if e["role"] == "directory"
            )
            # the operator calls the mesh port with its certificate from the data dir
            tls_dir = Path(directory["ca_file"]).parent
            found = _buf_curl(
                directory["mesh_address"],
                "SearchUsers",
                {"query": "Anderson"},
                tls=(
                    directory["ca_file"],
                    str(tls_dir / "operator.local.pem"),
                    str(tls_dir / "operator.local.key"),
                ),
            )
            assert [u["username"] for u in found["users"]] == ["alice"]  # type: ignore[attr-defined, union-attr]
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    assert "Demo logins" in stdout and "alice" in stdout and "alice-demo" in stdout
