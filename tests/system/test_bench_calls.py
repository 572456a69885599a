"""`procall bench calls` end to end with tiny parameters: a real DataCenter, real aiortc peers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

KEYS = {
    "ringing_p50_ms",
    "ringing_p99_ms",
    "first_audio_p50_ms",
    "first_audio_p99_ms",
    "setups_per_s",
    "baseline_unary_p50_ms",
    "baseline_unary_p99_ms",
}


def test_bench_calls_places_three_calls_across_servers(
    redis_available: None, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "procall", "bench", "calls", "--calls", "3", "--setups", "6",
         "--concurrency", "2", "--json"],
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
    assert result["calls"] == 3 and result["setups"] == 6 and result["concurrency"] == 2
    # ringing comes after the PlaceCall request left, audio after the answer: sane orders
    assert 0 < result["ringing_p50_ms"] <= result["ringing_p99_ms"] < 5_000
    assert 0 < result["first_audio_p50_ms"] <= result["first_audio_p99_ms"] < 10_000
    assert result["place_to_first_audio_p50_ms"] > result["first_audio_p50_ms"]
    assert result["first_audio_p50_ms"] >= result["first_audio_caller_p50_ms"]
    assert result["setups_per_s"] > 0
    assert 0 < result["baseline_unary_p50_ms"] <= result["baseline_unary_p99_ms"]
    # the bare round trip is the floor of procall's set-up
    assert result["baseline_unary_p50_ms"] < result["ringing_p50_ms"]
    assert {"ucserver-1", "ucserver-2"} <= result["cpu_ms_per_setup"].keys()
    assert set(result["targets"]) == {"ringing_p99_ms", "first_audio_p50_ms"}
