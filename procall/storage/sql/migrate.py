"""Bringing a procall database to the newest schema (Alembic, programmatically).

``upgrade_to_head(url)`` is what servers call at start (and tests, and tools): it
runs every pending revision of ``procall/storage/sql/migrations`` in one
transaction. On PostgreSQL a transaction-scoped advisory lock serialises servers
that start at the same time. ``migration_sql(url)`` renders the DDL without a
database (Alembic offline mode), which is how the SQL Server schema is checked.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import metadata

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "load_all_tables",
    "migration_sql",
    "upgrade_to_head",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# any constant: the key of the PostgreSQL advisory lock held while migrating
_PG_LOCK_KEY = 0x70726F63616C6C


def load_all_tables() -> MetaData:
    """Import every module of ``procall.storage.sql`` so all areas' tables are declared.

    Areas declare their tables next to their stores (on the shared ``metadata``); the
    complete schema is only known once all of them are imported.
    """
    package = importlib.import_module("procall.storage.sql")
    for module in pkgutil.iter_modules(package.__path__, prefix="procall.storage.sql."):
        if not module.name.endswith(".migrations"):
            importlib.import_module(module.name)
    return metadata


def alembic_config(url: str = "", *, output: io.StringIO | None = None) -> Config:
    """An Alembic ``Config`` for procall's migrations (no ``alembic.ini`` needed)."""
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision id of the migration history."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the history is never empty
        raise RuntimeError("the migration history is empty")
    return head


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade_to_head(target: str | SqlDatabase, *, name: str = "database") -> None:
    """Apply every pending migration to the database at ``target`` (a URL or a database).

    Raises ``Unavailable`` naming ``name`` (or the database's name) when it does not answer.
    """
    database = target if isinstance(target, SqlDatabase) else SqlDatabase(target, name=name)
    try:
        async with database.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        if database is not target:
            await database.dispose()


async def current_revision(database: SqlDatabase) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    async with database.connect() as connection:
        return await connection.run_sync(_current)


def migration_sql(url: str) -> str:
    """The DDL of every migration for ``url``'s dialect, rendered without connecting."""
    output = io.StringIO()
    command.upgrade(alembic_config(url, output=output), "head", sql=True)
    return output.getvalue()
