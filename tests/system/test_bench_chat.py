"""`procall bench chat` end to end: a real DataCenter, real clients, one JSON object out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from procall.launch.postgres import PostgresServer

pytestmark = [pytest.mark.system, pytest.mark.slow]

KEYS = {
    "p50_ms", "p99_ms", "messages_per_s", "offered_rate", "database", "errors", "lost",
    "server_cpu_us_per_message", "baseline_server_cpu_us_per_message", "cpu_ratio",
    "knee_per_s", "baseline_knee_per_s", "cpu_us_per_message", "vitals", "baseline",
}  # fmt: skip


def _bench(database: str, tmp_path: Path, ramp: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "procall", "bench", "chat", "--duration", "2", "--rate", "50",
         "--conversations", "10", "--database", database, "--ramp", ramp, "--ramp-start",
         "50", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # --json: one object, nothing else on stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def _check(result: dict[str, Any], database: str) -> None:
    assert KEYS <= result.keys()
    assert result["database"] == database
    assert result["offered_rate"] == 50.0
    assert result["sent"] == 100
    assert result["errors"] == 0, result["error_examples"]
    # every answered send reached the receiver on the other UCServer
    assert result["delivered"] == result["answered"] == 100
    assert result["lost"] == 0
    assert isinstance(result["p50_ms"], float) and isinstance(result["p99_ms"], float)
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert isinstance(result["messages_per_s"], float) and result["messages_per_s"] > 0
    # the bare baseline of the same pattern ran on the same database and lost nothing
    bare = result["baseline"]
    assert bare["sent"] == bare["delivered"] == 100 and bare["lost"] == bare["errors"] == 0
    # CPU per message of every process, the UCServers' and the bare servers' summed up
    assert {"ucserver-1", "ucserver-2", "redis", "loadgen"} <= result["cpu_us_per_message"].keys()
    assert {"bare-1", "bare-2", "redis", "loadgen"} <= bare["cpu_us_per_message"].keys()
    assert result["server_cpu_us_per_message"] > 0
    assert result["baseline_server_cpu_us_per_message"] > 0
    assert result["cpu_ratio"] > 0
    # every server reported its loop lag and GC pauses
    assert {"ucserver-1", "ucserver-2", "directory"} <= result["vitals"].keys()
    assert {"bare-1", "bare-2"} == bare["vitals"].keys()
    assert all(v["gc_pauses"] >= 0 for v in result["vitals"].values())


def test_bench_chat_on_sqlite(redis_available: None, tmp_path: Path) -> None:
    result = _bench("sqlite", tmp_path, ramp="0")
    _check(result, "sqlite")
    assert result["knee_per_s"] == result["baseline_knee_per_s"] == 0.0  # --ramp 0: no search
    assert result["knee_steps"] == []


def test_bench_chat_on_postgres(
    redis_available: None, postgres_available: None, tmp_path: Path
) -> None:
    result = _bench("postgres", tmp_path, ramp="0.5")
    _check(result, "postgres")
    assert "postgres" in result["cpu_us_per_message"]  # with its backends
    # the knee search ran on both: each step's rate, p99 and verdict
    for steps in (result["knee_steps"], result["baseline"]["knee_steps"]):
        assert steps and steps[0][0] == 50
    assert result["knee_per_s"] >= 0 and result["baseline_knee_per_s"] >= 0


def test_throwaway_postgres_answers_and_leaves_nothing(postgres_available: None) -> None:
    import psycopg

    server = PostgresServer(fsync=False).start()
    base = server.base_dir
    try:
        assert server.pid > 0
        dsn = server.url().replace("postgresql+asyncpg", "postgresql")
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            row = connection.execute("SHOW fsync").fetchone()
        assert row == ("off",)
    finally:
        server.close()
    assert not base.exists()
    server.close()  # idempotent
