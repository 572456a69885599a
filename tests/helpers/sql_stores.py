"""Databases for the store behaviour suites: each test gets a copy of a migrated SQLite
template, or a migrated PostgreSQL database whose table under test was emptied; and the
check that the migrations build exactly the table a store declares."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Index, Table
from sqlalchemy.engine import Connection

from procall.storage.sql import SqlDatabase, current_revision, head_revision
from procall.storage.sql.migrate import load_all_tables, upgrade_to_head
from tests.helpers.postgres import PostgresCluster

__all__ = ["SQL_BACKENDS", "MigratedDatabases", "check_migration", "migrate"]

#: The SQL backends a store suite runs on (PostgreSQL where the machine has it).
SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def migrate(url: str) -> None:
    """Bring ``url`` to the newest schema (on a thread: fixtures may run inside an event loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, upgrade_to_head(url)).result()


class MigratedDatabases:
    """One migrated SQLite template and one migrated PostgreSQL database for a test module,
    made on first use and kept for the test run."""

    def __init__(self, name: str, table: str) -> None:
        self._name = name
        self._table = table
        self._template: Path | None = None
        self._postgres: str | None = None

    def url(self, backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        """A database URL for one test: a fresh SQLite copy, or PostgreSQL with the table
        under test emptied."""
        if backend == "sqlite":
            if self._template is None:
                factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
                template = factory.mktemp(self._name) / "template.db"
                migrate(f"sqlite+aiosqlite:///{template}")
                self._template = template
            path = tmp_path / f"{self._name}.db"
            shutil.copyfile(self._template, path)
            return f"sqlite+aiosqlite:///{path}"
        import psycopg

        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        if self._postgres is None:
            self._postgres = cluster.create_database(self._name)
            migrate(self._postgres)
        with psycopg.connect(cluster.dsn(self._name), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {self._table}".encode())
        return self._postgres


def _table_of(difference: Any) -> str | None:
    """The table an Alembic ``compare_metadata`` difference is about."""
    if isinstance(difference, list):
        return _table_of(difference[0])
    for item in difference:
        if isinstance(item, Table):
            return item.name
        if isinstance(item, Index) and item.table is not None:
            return item.table.name
    return difference[2] if len(difference) > 2 and isinstance(difference[2], str) else None


async def check_migration(url: str, table: str, name: str) -> None:
    """Upgrade the empty database at ``url`` to the newest revision and check that the
    migrations build exactly the ``table`` its store module declares."""

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        found = compare_metadata(context, load_all_tables())
        return [d for d in found if _table_of(d) == table]

    database = SqlDatabase(url, name=name)
    try:
        await upgrade_to_head(database)
        assert await current_revision(database) == head_revision()
        async with database.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await database.dispose()
