"""`procall bench media` end to end with tiny parameters: real relay processes, real peers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from procall.bench.media import media_steps

pytestmark = [pytest.mark.system, pytest.mark.slow]

KEYS = {
    "calls_per_core",
    "baseline_transcoding_calls_per_core",
    "baseline_forwarding_calls_per_core",
    "cpu_per_call",
    "relays",
}


def test_bench_media_runs_two_calls_through_each_relay(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "procall", "bench", "media", "--max-calls", "2", "--step", "2",
         "--seconds", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # --json: one object, nothing else on stdout
    result = json.loads(lines[0])
    assert KEYS <= result.keys()
    assert set(result["relays"]) == {"procall", "forwarding", "transcoding"}
    for kind, run in result["relays"].items():
        (step,) = run["steps"]
        assert step["calls"] == 2, kind
        assert step["frames_sent"] > 0, kind
        # a loose bound: the machine may be busy, but the audio must flow both ways
        assert step["frames_received"] > 0.8 * step["frames_sent"], (kind, step)
        assert step["tone_ok"], (kind, step)
        assert step["relay_cpu"] > 0, kind


def test_steps_start_with_half_a_step() -> None:
    assert media_steps(80, 10) == [5, 10, 20, 30, 40, 50, 60, 70, 80]
    assert media_steps(2, 2) == [2]
    assert media_steps(3, 10) == [3]
