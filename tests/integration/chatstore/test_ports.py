"""The chat & journal SQL stores satisfy the domain's ports."""

from __future__ import annotations

from pathlib import Path

from procall.chat.ports import ConversationStore, MessageStore
from procall.journal.ports import JournalStore
from procall.outbox.ports import CentralWriter
from procall.storage.sql import SqlDatabase
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.chat_conversations import SqlConversationStore
from procall.storage.sql.chat_messages import SqlMessageStore
from procall.storage.sql.journal import SqlJournalStore


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
