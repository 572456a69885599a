"""A migrated chat & journal database on SQLite and on PostgreSQL for every test.

The ``database`` fixture runs each test on both; the ``stores`` fixture runs each test of a
port's behaviour suite on both and on the in-memory fakes of the chat unit tests
(``tests/unit/chat/fakes.py``), so that the fakes cannot drift from the SQL stores.
SQLite gets a fresh file (a copy of one migrated template file); PostgreSQL shares one
migrated database per session whose chat and journal tables are emptied before each test
(cheaper than ``CREATE DATABASE``).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from procall.chat.model import ChatMessage, Conversation, ConversationKind
from procall.chat.ports import ConversationStore, MessageStore
from procall.journal.ports import JournalStore
from procall.outbox.ports import Record
from procall.storage.sql import SqlDatabase, upgrade_to_head
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.chat_conversations import SqlConversationStore
from procall.storage.sql.chat_messages import SqlMessageStore
from procall.storage.sql.journal import SqlJournalStore
from procall.storage.sql.tables import chat_members, chat_messages, conversations, journal_entries
from tests.helpers.postgres import PostgresCluster
from tests.unit.chat.fakes import (
    MemoryConversationStore,
    MemoryDurableWrites,
    MemoryJournalStore,
    MemoryMessageStore,
    Tables,
)

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_TABLES = (journal_entries, chat_messages, chat_members, conversations)


def _migrate(url: str) -> None:
    # fixtures may be requested from inside a running event loop: migrate on a thread
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, upgrade_to_head(url)).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied by every SQLite test."""
    path = tmp_path_factory.mktemp("chatstore") / "template.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def chatstore_pg_database(postgres_cluster: PostgresCluster) -> str:
    """One migrated PostgreSQL database for the chat storage tests of this session."""
    url = postgres_cluster.create_database("chatstore_tests")
    _migrate(url)
    return url


@pytest.fixture
def chatstore_pg_url(postgres_cluster: PostgresCluster, chatstore_pg_database: str) -> str:
    """The shared PostgreSQL test database with empty chat and journal tables."""
    import psycopg

    tables = ", ".join(table.name for table in _TABLES)
    with psycopg.connect(postgres_cluster.dsn("chatstore_tests"), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables}".encode())
    return chatstore_pg_database


def _connect(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> SqlDatabase:
    if kind == "sqlite":
        path = tmp_path / "chat.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("chatstore_pg_url")
    return SqlDatabase(url, name="chat and journal database", connect_timeout=2.0)


@pytest.fixture(params=SQL_BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlDatabase]:
    """The migrated chat & journal database, on SQLite and PostgreSQL in turn."""
    db = _connect(request.param, request, tmp_path)
    try:
        yield db
    finally:
        await db.dispose()


@dataclass
class ChatStores:
    """The chat & journal stores over one database, and the central write path into it."""

    conversations: ConversationStore
    messages: MessageStore
    journal: JournalStore
    write: Callable[[Sequence[Record]], Awaitable[object]]


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChatStores]:
    """The stores on the in-memory fakes, on SQLite and on PostgreSQL in turn."""
    if request.param == "memory":
        tables = Tables()
        yield ChatStores(
            MemoryConversationStore(tables),
            MemoryMessageStore(tables),
            MemoryJournalStore(tables),
            MemoryDurableWrites(tables).write,
        )
        return
    database = _connect(request.param, request, tmp_path)
    try:
        yield ChatStores(
            SqlConversationStore(database),
            SqlMessageStore(database),
            SqlJournalStore(database),
            SqlCentralWriter(database).apply,
        )
    finally:
        await database.dispose()


def group(
    conversation_id: str,
    members: tuple[str, ...],
    *,
    at: float = 1000.0,
    title: str = "team",
    kind: ConversationKind = ConversationKind.GROUP,
) -> Conversation:
    """A new conversation created at ``at``."""
    return Conversation(conversation_id, kind, title, members, created_at=at, updated_at=at)


def message(
    conversation_id: str,
    message_id: int,
    sender_id: str = "alice",
    text: str | None = None,
    *,
    at: float | None = None,
    request_id: str | None = None,
) -> ChatMessage:
    """A message with predictable defaults (text, time and request id derived from the id)."""
    return ChatMessage(
        conversation_id=conversation_id,
        message_id=message_id,
        sender_id=sender_id,
        text=text if text is not None else f"message {message_id}",
        created_at=at if at is not None else 2000.0 + message_id,
        request_id=request_id if request_id is not None else f"req-{conversation_id}-{message_id}",
    )
