"""A chat & journal database that goes away: ``Unavailable`` in bounded time, then recovery.

The test owns its PostgreSQL cluster, so crashing it harms no other test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from procall.chat.model import ReadMarker
from procall.errors import Unavailable
from procall.journal.model import JournalEntry, JournalKind
from procall.launch.redis import free_port
from procall.storage.sql import SqlDatabase, upgrade_to_head
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.chat_conversations import SqlConversationStore
from procall.storage.sql.chat_messages import SqlMessageStore
from procall.storage.sql.journal import SqlJournalStore
from tests.helpers.postgres import PostgresCluster
from tests.integration.chatstore.conftest import group, message

NAME = "chat and journal database"


async def _unavailable_within(call: Callable[[], Awaitable[object]], bound: float) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable) as failure:
        await call()
    assert time.monotonic() - started < bound
    assert failure.value.metadata == {"backend": NAME}
    assert NAME in failure.value.message


def _calls(database: SqlDatabase) -> list[Callable[[], Awaitable[object]]]:
    conversations = SqlConversationStore(database)
    messages = SqlMessageStore(database)
    journal = SqlJournalStore(database)
    writer = SqlCentralWriter(database)
    return [
        lambda: writer.apply([message("g", 2), ReadMarker("g", "bob", 2, 1.0)]),
        lambda: conversations.get("g"),
        lambda: conversations.create(group("h", ("alice",))),
        lambda: conversations.list_for_member("alice", 10, None),
        lambda: conversations.add_members("g", ["carol"], now=5.0),
        lambda: messages.page("g", backward=True, from_id=None, limit=10),
        lambda: messages.count_unread("bob", {"g": 0}),
        lambda: messages.search("alice", "x", None, None, 10),
        lambda: journal.page("alice", [], None, None, None, 10),
        lambda: journal.delete("alice", "e1"),
    ]


async def test_postgres_crash_then_recovery(postgres_available: None) -> None:
    with PostgresCluster() as cluster:
        url = cluster.create_database("chat")
        await upgrade_to_head(url)
        database = SqlDatabase(url, name=NAME, connect_timeout=1.0, operation_timeout=3.0)
        writer = SqlCentralWriter(database)
        conversations = SqlConversationStore(database)
        try:
            await conversations.create(group("g", ("alice", "bob")))
            await writer.apply([message("g", 1)])

            await asyncio.to_thread(cluster.stop, "immediate")
            for call in _calls(database):
                await _unavailable_within(call, bound=3.0)

            await asyncio.to_thread(cluster.start)
            # the same SqlDatabase reconnects: no restart needed, and nothing of the failed
            # batch was applied
            assert await SqlMessageStore(database).max_message_id("g") == 1
            entry = JournalEntry("e1", "alice", JournalKind.NOTE, 1.0, text="after")
            await writer.apply([message("g", 2), ReadMarker("g", "bob", 2, 1.0), entry])
            assert await conversations.read_marker("g", "bob") == 2
            assert await SqlJournalStore(database).get("alice", "e1") == entry
        finally:
            await database.dispose()


async def test_pooled_connections_of_a_restarted_database_are_replaced_unnoticed(
    postgres_available: None,
) -> None:
    """No ping per checkout: a pooled connection the database dropped is replaced at
    checkout (the driver saw its socket close) or, found dead in use, the write runs
    once more on a new one; either way the first call after the restart works."""
    with PostgresCluster() as cluster:
        url = cluster.create_database("chat")
        await upgrade_to_head(url)
        database = SqlDatabase(url, name=NAME, connect_timeout=1.0, operation_timeout=3.0)
        writer = SqlCentralWriter(database)
        messages = SqlMessageStore(database)
        try:
            await SqlConversationStore(database).create(group("g", ("alice", "bob")))
            await asyncio.gather(*(writer.apply([message("g", i)]) for i in (1, 2, 3)))
            assert database.engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
            for _ in range(2):
                await asyncio.to_thread(cluster.stop, "immediate")
                await asyncio.to_thread(cluster.start)
                await writer.apply([message("g", 4)])  # no Unavailable: nothing queued
                assert await messages.max_message_id("g") == 4
        finally:
            await database.dispose()


async def test_a_database_that_never_answers_is_unavailable() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/chat"
    database = SqlDatabase(url, name=NAME, connect_timeout=1.0, operation_timeout=3.0)
    try:
        for call in _calls(database)[:2]:
            await _unavailable_within(call, bound=3.0)
    finally:
        await database.dispose()
