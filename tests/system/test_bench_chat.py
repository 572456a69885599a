"""`procall bench chat` end to end: a real DataCenter, real clients, one JSON object out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from procall.launch.postgres import PostgresServer

pytestmark = [pytest.mark.system, pytest.mark.slow]

KEYS = {"p50_ms", "p99_ms", "messages_per_s", "offered_rate", "database", "errors"}


def _bench(database: str, tmp_path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "procall", "bench", "chat", "--duration", "2", "--rate", "50",
         "--conversations", "10", "--database", database, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # --json: one object, nothing else on stdout
    result: dict[str, object] = json.loads(lines[0])
    return result


def _check(result: dict[str, object], database: str) -> None:
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


def test_bench_chat_on_sqlite(redis_available: None, tmp_path: Path) -> None:
    _check(_bench("sqlite", tmp_path), "sqlite")


def test_bench_chat_on_postgres(
    redis_available: None, postgres_available: None, tmp_path: Path
) -> None:
    _check(_bench("postgres", tmp_path), "postgres")


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
