"""Alembic environment: runs on a connection handed over by ``procall.storage.sql.migrate``.

Three ways in: a connection in ``config.attributes["connection"]`` (what procall does),
offline SQL generation (``sql=True``, used to check the SQL Server DDL), or a plain
``sqlalchemy.url`` option (for running the ``alembic`` command by hand).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from procall.storage.sql.migrate import load_all_tables

config = context.config
metadata = load_all_tables()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _run_offline()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    asyncio.run(_run_with_url(config.get_main_option("sqlalchemy.url") or ""))
