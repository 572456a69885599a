"""Pins the public names of the chat & journal SQL modules; the stores satisfy the ports."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from procall.chat.ports import ConversationStore, MessageStore
from procall.journal.ports import JournalStore
from procall.outbox.ports import CentralWriter
from procall.storage.sql import SqlDatabase
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.chat_conversations import SqlConversationStore
from procall.storage.sql.chat_messages import SqlMessageStore
from procall.storage.sql.journal import SqlJournalStore

SURFACE = {
    "procall.storage.sql.chat_conversations": {
        "SqlConversationStore",
        "later_of",
        "lock_conversation",
        "member_conversations_page",
        "members_of",
        "refuse_nul",
    },
    "procall.storage.sql.chat_messages": {
        "UNREAD_CHUNK",
        "SqlMessageStore",
        "history_page",
        "message_from_row",
        "search_messages",
        "unread_counts",
    },
    "procall.storage.sql.journal": {"SqlJournalStore", "entry_from_row", "journal_page"},
    "procall.storage.sql.central_writer": {
        "SqlCentralWriter",
        "advance_markers",
        "bump_conversations",
        "existing_entry_ids",
        "existing_message_keys",
    },
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names_are_pinned(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        assert hasattr(loaded, name), name


async def test_the_stores_implement_the_ports(tmp_path: Path) -> None:
    database = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", name="x")
    try:
        # checked by mypy --strict: each class is structurally its port
        conversations: ConversationStore = SqlConversationStore(database)
        messages: MessageStore = SqlMessageStore(database)
        journal: JournalStore = SqlJournalStore(database)
        writer: CentralWriter = SqlCentralWriter(database)
        assert all((conversations, messages, journal, writer))
    finally:
        await database.dispose()
