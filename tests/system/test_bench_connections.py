"""`procall bench connections` end to end with a few clients: a real DataCenter, a UCServer
killed and started again, the SDK's clients coming back to their sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

KEYS = {
    "clients",
    "held",
    "rss_bytes_per_client",
    "baseline_rss_bytes_per_client",
    "rss_ratio",
    "restart_clients",
    "reconnect_s",
    "resumed",
    "relogged",
}


def test_bench_connections_brings_every_client_of_a_restarted_ucserver_back(
    redis_available: None, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "procall", "bench", "connections", "--clients", "40",
         "--step", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # --json: one object, nothing else on stdout
    result = json.loads(lines[0])
    assert KEYS <= result.keys()
    assert result["clients"] == 40 and result["held"] == 40
    # half the clients are homed on the restarted UCServer; every one of them came back,
    # on its own session (its token still valid there) or after a new login
    assert result["restart_clients"] == 20
    assert result["resumed"] + result["relogged"] == 20
    assert result["reconnect_s"] >= 0
    # with a few clients the memory figures are noise (pages, allocator arenas): only their
    # presence is checked here; the bench's real runs have thousands
    assert all(
        isinstance(result[key], int | float)
        for key in ("rss_bytes_per_client", "baseline_rss_bytes_per_client", "rss_ratio")
    )
