"""`procall up --trace console` as the README shows it: one presence change of a user on
ucserver-2, watched by a user on ucserver-1, is one trace whose spans both UCServers print
on the console, without any collector."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.system.test_readme_client import _env, _procall

pytestmark = pytest.mark.system

_SPAN = re.compile(r"^\[(?P<service>\S+) (?P<server>\S+)\] (?P<name>.+?) (?P<kind>[A-Z]+) "
                   r"trace=(?P<trace>[0-9a-f]{32}) ")  # fmt: skip


class _Collected:
    """Every stdout line of a process, gathered in the background."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)


def _wait(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_up_trace_console_prints_one_presence_change_as_one_trace_of_both_servers(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "dc"
    up = subprocess.Popen(
        [sys.executable, "-m", "procall", "up", "--data-dir", str(data_dir), "--trace", "console"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    out = _Collected(up)
    watch: subprocess.Popen[str] | None = None
    try:
        _wait(lambda: (data_dir / "endpoints.json").exists() or up.poll() is not None, 120)
        assert up.poll() is None, up.communicate()[1][-2000:]
        watch = subprocess.Popen(
            [sys.executable, "-m", "procall", "client", "--data-dir", str(data_dir), "login",
             "alice", "--password", "alice-demo", "watch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(),
        )  # fmt: skip
        seen = _Collected(watch)
        _wait(lambda: any("connected to ucserver-1" in line for line in seen.lines))
        grace = ["client", "--data-dir", str(data_dir), "login", "grace", "--password",
                 "grace-demo"]  # fmt: skip
        changed = _procall(*grace, "presence", "set", "BUSY", cwd=tmp_path)
        assert changed.returncode == 0, changed.stderr
        _wait(lambda: any(" busy " in line for line in seen.lines))

        def spans() -> list[re.Match[str]]:
            return [m for line in list(out.lines) if (m := _SPAN.match(line))]

        def root() -> re.Match[str] | None:
            return next((m for m in spans() if m["name"].endswith("/SetPresence")
                         and m["kind"] == "SERVER"), None)  # fmt: skip

        _wait(lambda: root() is not None)
        trace = root()["trace"]  # type: ignore[index]

        def delivered() -> bool:
            return any(m["trace"] == trace and m["name"] == "session deliver"
                       and m["server"] == "ucserver-1" for m in spans())  # fmt: skip

        _wait(delivered)
        names = {(m["server"], m["name"]) for m in spans() if m["trace"] == trace}
        assert ("ucserver-2", "peer send") in names, names
        assert ("ucserver-1", "peer receive") in names, names
    finally:
        if watch is not None:
            watch.send_signal(signal.SIGINT)
            watch.communicate(timeout=30)
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
    assert "Traceback" not in err
