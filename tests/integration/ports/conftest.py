"""The SQL databases the port suites run on: a migrated SQLite file and a migrated, fresh
PostgreSQL database (``sql_database``, by the backend name of the suite's parameter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from procall.storage.sql import SqlDatabase, upgrade_to_head

#: The SQL backends of a suite's parameters (after "memory").
SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def sql_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> SqlDatabase:
    """A migrated database of ``kind`` ("sqlite" or "postgres"); dispose of it after use."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'procall.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = SqlDatabase(url, name="database", connect_timeout=2.0)
    await upgrade_to_head(database)
    return database
