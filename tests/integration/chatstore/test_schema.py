"""The chat & journal schema: empty to head on SQLite and PostgreSQL, SQL Server DDL and queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Index, Table, insert, inspect
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection

from procall.journal.model import JournalKind
from procall.storage.sql import SqlDatabase, current_revision, head_revision, upgrade_to_head
from procall.storage.sql.central_writer import (
    advance_markers,
    bump_conversations,
    existing_entry_ids,
    existing_message_keys,
)
from procall.storage.sql.chat_conversations import (
    lock_conversation,
    member_conversations_page,
    members_of,
)
from procall.storage.sql.chat_messages import history_page, search_messages, unread_counts
from procall.storage.sql.journal import journal_page
from procall.storage.sql.migrate import load_all_tables, migration_sql
from procall.storage.sql.tables import chat_messages

TABLES = {"chat_conversations", "chat_conversation_members", "chat_messages", "journal_entries"}


def _table_of(difference: Any) -> str | None:
    """The table an Alembic difference is about (they are tuples, or lists of tuples)."""
    if isinstance(difference, list):
        return _table_of(difference[0])
    for item in difference:
        if isinstance(item, Table):
            return item.name
        if isinstance(item, Index) and item.table is not None:
            return item.table.name
    # ("modify_type", schema, table name, column name, ...)
    return difference[2] if len(difference) > 2 and isinstance(difference[2], str) else None


def _chat_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    found = compare_metadata(context, load_all_tables())
    return [d for d in found if _table_of(d) in TABLES]


def _schema(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table: {index["name"] for index in inspector.get_indexes(table) if index["name"]}
        for table in inspector.get_table_names()
    }


async def _check_upgrade(url: str) -> None:
    database = SqlDatabase(url, name="chat and journal database")
    try:
        assert await current_revision(database) is None
        await upgrade_to_head(database)
        await upgrade_to_head(database)  # a second run is a no-op
        assert await current_revision(database) == head_revision()
        async with database.connect() as connection:
            schema = await connection.run_sync(_schema)
            assert TABLES <= set(schema)
            assert schema["chat_messages"] >= {"uq_chat_messages_request_id"}
            assert schema["chat_conversation_members"] >= {"ix_chat_conversation_members_user_id"}
            assert schema["journal_entries"] >= {"ix_journal_entries_user_id_event_time_entry_id"}
            # the migration builds exactly the tables that tables.py declares
            assert await connection.run_sync(_chat_differences) == []
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
    # NVARCHAR(max), not the deprecated NTEXT that takes no lower() nor comparison
    assert ddl.count("text NVARCHAR(max) NOT NULL") == 2 and "NTEXT" not in ddl
    assert "created_at DOUBLE PRECISION NOT NULL" in ddl
    assert "message_id BIGINT NOT NULL" in ddl and "IDENTITY" not in ddl
    assert "last_message_id BIGINT NOT NULL DEFAULT 0" in ddl
    # SQL Server's UNIQUE allows one NULL only: a filtered index for request ids
    assert (
        "CREATE UNIQUE INDEX uq_chat_messages_request_id ON chat_messages "
        "(conversation_id, sender_id, request_id) WHERE request_id IS NOT NULL" in ddl
    )
    assert "VALUES ('0001_directory')" in ddl and "'0003_chat_journal'" in ddl


def test_main_queries_compile_for_sql_server() -> None:
    dialect = mssql.dialect()  # type: ignore[no-untyped-call]
    row = {"conversation_id": "c", "message_id": 1, "sender_id": "s", "request_id": "r"}
    statements = {
        "history": history_page("c", backward=True, from_id=10, limit=50),
        "forward": history_page("c", backward=False, from_id=None, limit=50),
        "unread": unread_counts("mssql", "u", {"c1": 3, "c2": 0}),
        "search": search_messages("u", "50%_off[1]", None, (1.5, "c", 3), 20),
        "conversations": member_conversations_page("u", 20, (12.5, "c9")),
        "members": members_of(["c1", "c2"]),
        "lock": lock_conversation("c"),
        "journal": journal_page("u", [JournalKind.NOTE], 1.0, 2.0, (1.5, "e"), 20),
        "bump": bump_conversations(),
        "markers": advance_markers(),
        "existing": existing_message_keys([row]),
        "entries": existing_entry_ids(["e1", "e2"]),
        "insert": insert(chat_messages),
    }
    compiled = {name: str(s.compile(dialect=dialect)) for name, s in statements.items()}
    for name in ("history", "forward", "search", "conversations", "journal"):
        assert compiled[name].startswith("SELECT TOP "), name
    assert "ORDER BY chat_messages.message_id DESC" in compiled["history"]
    assert "GROUP BY chat_messages.conversation_id" in compiled["unread"]
    assert "lower(chat_messages.text) LIKE lower(" in compiled["search"]
    assert "ESCAPE '\\'" in compiled["search"]
    assert "JOIN chat_conversation_members" in compiled["conversations"]
    assert "WITH (UPDLOCK, ROWLOCK)" in compiled["lock"]
    assert "WITH (UPDLOCK, HOLDLOCK)" in compiled["existing"]
    assert "WITH (UPDLOCK, HOLDLOCK)" in compiled["entries"]
    assert "CASE WHEN" in compiled["bump"] and "GREATEST" not in compiled["bump"]
    assert "read_message_id <" in compiled["markers"]
