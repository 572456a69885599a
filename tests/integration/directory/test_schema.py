"""The schema: migrations from empty to head (SQLite, PostgreSQL), SQL Server DDL and queries."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable

from procall.directory.models import SearchField
from procall.storage.sql import (
    SqlConfigError,
    SqlDatabase,
    create_engine,
    current_revision,
    head_revision,
    metadata,
    upgrade_to_head,
)
from procall.storage.sql import directory_queries as q
from procall.storage.sql.migrate import load_all_tables, migration_sql

TABLES = {
    "directory_users",
    "directory_groups",
    "directory_group_members",
    "directory_delegations",
    "directory_delegation_scopes",
    "directory_pickup_groups",
    "directory_pickup_group_members",
    "directory_home_servers",
}


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, load_all_tables()))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _check_upgrade(url: str) -> None:
    database = SqlDatabase(url, name="user database")
    try:
        assert await current_revision(database) is None
        await upgrade_to_head(database)
        await upgrade_to_head(database)  # a second run is a no-op
        assert await current_revision(database) == head_revision()
        async with database.connect() as connection:
            assert TABLES <= await connection.run_sync(_tables)
            # the migrations build exactly the schema the code declares
            assert await connection.run_sync(_differences) == []
    finally:
        await database.dispose()


async def test_upgrade_empty_sqlite_to_head(tmp_path: Path) -> None:
    await _check_upgrade(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")


async def test_upgrade_empty_postgres_to_head(postgres_url: str) -> None:
    await _check_upgrade(postgres_url)


def test_migration_renders_sql_server_ddl() -> None:
    ddl = migration_sql("mssql+pyodbc://")
    for table in TABLES:
        assert f"CREATE TABLE {table} (" in ddl
    assert "username NVARCHAR(64) NOT NULL" in ddl
    assert "create_time DATETIME2 NOT NULL" in ddl
    assert "admin BIT NOT NULL" in ddl
    # unique-when-set: SQL Server's UNIQUE allows one NULL only, so a filtered index
    assert (
        "CREATE UNIQUE INDEX uq_directory_users_mail_key ON directory_users (mail_key) "
        "WHERE mail_key IS NOT NULL" in ddl
    )
    assert "ON DELETE CASCADE" in ddl
    assert "VALUES ('0001_directory')" in ddl and f"'{head_revision()}'" in ddl


@pytest.mark.parametrize("dialect", [mssql.dialect(), postgresql.dialect(), sqlite.dialect()])
def test_tables_compile_for_every_dialect(dialect: object) -> None:
    for table in metadata.sorted_tables:
        assert "CREATE TABLE" in str(CreateTable(table).compile(dialect=dialect))  # type: ignore[arg-type]
        for index in table.indexes:
            assert "INDEX" in str(CreateIndex(index).compile(dialect=dialect))  # type: ignore[arg-type]


def test_main_queries_compile_for_sql_server() -> None:
    dialect = mssql.dialect()
    statements = {
        "list": q.users_page(after_key="bob", limit=51),
        "search": q.users_page(after_key=None, limit=51, text="Öz_%[", field=SearchField.ALL),
        "home": q.users_page(after_key=None, limit=11, home_server_id="ucserver-1"),
        "members": q.users_page(after_key="a", limit=11, group_id="g1"),
        "groups": q.groups_page(after_key="sales", limit=11),
        "group": q.select_group("g1"),
        "memberships": q.group_member_ids(["u1", "u2"]),
        "scopes": q.delegated_scopes("u1", "u2"),
        "pickup": q.shared_pickup_groups("u1", "u2"),
    }
    compiled = {name: str(s.compile(dialect=dialect)) for name, s in statements.items()}
    assert compiled["list"].startswith("SELECT TOP ")
    assert "ORDER BY directory_users.username_key" in compiled["list"]
    assert "ESCAPE '\\'" in compiled["search"]
    assert "count(*)" in compiled["groups"].lower()
    literal = q.like_pattern("50%_off[1]\\x")
    assert literal == "%50\\%\\_off\\[1]\\\\x%"


def test_sql_server_urls_need_the_odbc_driver_only_when_used() -> None:
    if importlib.util.find_spec("pyodbc") is not None:
        pytest.skip("pyodbc is installed here; the missing-driver message cannot be seen")
    with pytest.raises(SqlConfigError) as failure:
        create_engine("mssql+aioodbc://user:secret@db.example/users?driver=ODBC+Driver+18")
    message = str(failure.value)
    assert "procall[mssql]" in message and "unixODBC" in message
    assert "secret" not in message
