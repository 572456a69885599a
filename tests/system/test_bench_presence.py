"""`procall bench presence` end to end: a real DataCenter, real clients, one JSON object out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

KEYS = {
    "p50_ms", "p99_ms", "deliveries_per_s", "server_cpu_us_per_delivery",
    "baseline_server_cpu_us_per_delivery", "cpu_ratio", "knee_per_s", "baseline_knee_per_s",
    "cpu_us_per_delivery", "idle_cpu_percent", "vitals", "baseline", "event_bytes",
}  # fmt: skip


def test_bench_presence_reports_procall_beside_the_same_pattern_baseline(
    redis_available: None, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "procall", "bench", "presence", "--clients", "40", "--rate",
         "200", "--seconds", "2", "--ramp", "0.5", "--ramp-start", "200", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # --json: one object, nothing else on stdout
    result: dict[str, Any] = json.loads(lines[0])
    assert KEYS <= result.keys()
    assert result["clients"] == 40 and result["offered_per_s"] == 200
    assert result["failed_changes"] == 0, result["first_failure"]
    # each change reached the watchers on the other UCServer, and as many on the bare one
    assert result["deliveries"] > 0 and result["delivered_fraction"] > 0.5
    bare = result["baseline"]
    assert bare["failed_changes"] == 0, bare["first_failure"]
    assert bare["deliveries"] > 0 and bare["delivered_fraction"] > 0.5
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    # what procall sends, measured, sized the bare events
    assert result["event_bytes"] > 20
    # CPU per delivery of every process; the servers' summed up; their ratio
    assert {"ucserver-1", "ucserver-2", "redis", "loadgen"} <= result["cpu_us_per_delivery"].keys()
    assert {"bare-1", "bare-2", "redis", "loadgen"} <= bare["cpu_us_per_delivery"].keys()
    assert result["server_cpu_us_per_delivery"] > 0
    assert result["baseline_server_cpu_us_per_delivery"] > 0
    assert result["cpu_ratio"] > 0
    # every server reported its loop lag and GC pauses
    assert {"ucserver-1", "ucserver-2", "directory"} <= result["vitals"].keys()
    assert {"bare-1", "bare-2"} == bare["vitals"].keys()
    # the knee search ran on both, from the given rate
    for steps in (result["knee_steps"], bare["knee_steps"]):
        assert steps and steps[0][0] == 200
    assert result["knee_per_s"] >= 0 and result["baseline_knee_per_s"] >= 0


def test_bench_overload_runs_without_then_with_shedding_on_cores_of_their_own(
    redis_available: None, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "procall", "bench", "overload", "--clients", "40", "--rate",
         "200", "--seconds", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(result) == ["without_shedding", "with_shedding"]
    for name, run in result.items():
        assert run["shedding"] is (name == "with_shedding")
        assert run["clients"] == 40 and run["deliveries"] > 0, run
        assert {"p50_ms", "p99_ms", "failed_by_code", "changes_skipped", "vitals"} <= run.keys()
        # every server on the first core, the load generator on the second
        assert set(map(tuple, run["server_cpus"].values())) == {(0,)}, run["server_cpus"]
        assert run["loadgen_cpus"] == [1]
