"""The README's client example, as a new user runs it: `procall up`, then a `watch` of one
demo user and a presence change of a contact homed on the other UCServer."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.system


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCALL_")}
    env.pop("REDIS_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _procall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "procall", *args],
        capture_output=True, text=True, cwd=cwd, env=_env(), timeout=60, check=False,
    )  # fmt: skip


class _Lines:
    """The stdout lines of a process, read in the background."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def until(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, f"the output ended before {text!r}"
            if text in line:
                return line


@pytest.fixture
def datacenter(tmp_path: Path) -> Iterator[Path]:
    """A running `procall up` (its data dir)."""
    data_dir = tmp_path / "dc"
    process = subprocess.Popen(
        [sys.executable, "-m", "procall", "up", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "endpoints.json").exists():
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "procall up did not come up"
            time.sleep(0.1)
        yield data_dir
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert "Traceback" not in err
    assert "the demo contacts were not seeded" not in out
    assert "Contacts: alice and frank (ucserver-1) with grace (ucserver-2)." in out


def test_the_readme_client_example_shows_a_cross_server_presence_change(
    datacenter: Path, tmp_path: Path
) -> None:
    shown = _procall("admin", "users", "show", "grace", "--json", "--data-dir", str(datacenter),
                     cwd=tmp_path)  # fmt: skip
    grace = json.loads(shown.stdout)
    assert grace["home_server_id"] == "ucserver-2"
    alice_login = ["client", "--data-dir", str(datacenter), "login", "alice",
                   "--password", "alice-demo"]  # fmt: skip
    listed = _procall(*alice_login, "contacts", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [grace["user_id"]]

    watch = subprocess.Popen(
        [sys.executable, "-m", "procall", *alice_login, "watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(),
    )  # fmt: skip
    try:
        lines = _Lines(watch)
        assert grace["user_id"] in lines.until("contact ")
        lines.until("connected to ucserver-1")
        changed = _procall(
            "client", "--data-dir", str(datacenter), "login", "grace", "--password",
            "grace-demo", "presence", "set", "BUSY", "--note", "in a meeting", cwd=tmp_path,
        )  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        busy = lines.until(f'{grace["user_id"]}  busy  "in a meeting"')
        assert " presence " in busy
        lines.until(f"{grace['user_id']}  offline")  # the one-shot command logged out
    finally:
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    assert "Traceback" not in err


def test_make_up_passes_args_on(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    dry = subprocess.run(
        ["make", "-n", "-C", str(root), "up", "ARGS=--ucservers 3 --data-dir /tmp/x"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert ".venv/bin/procall up --ucservers 3 --data-dir /tmp/x" in dry.stdout
