"""The outbox's parts satisfy the ports they are wired to (checked by mypy, exercised here)."""

from __future__ import annotations


def test_the_sqlite_outbox_satisfies_the_port() -> None:
    from procall.outbox.ports import Outbox
    from procall.storage.outbox import SqliteOutbox

    def takes(outbox: Outbox) -> Outbox:  # checked by mypy, exercised here
        return outbox

    assert takes(SqliteOutbox("unused.sqlite", 1, 1)) is not None


def test_the_writer_satisfies_the_chat_and_journal_write_ports() -> None:
    from procall.chat.ports import MessageWrites
    from procall.journal.ports import JournalWrites
    from procall.outbox.writer import DurableWriter
    from procall.storage.outbox import SqliteOutbox

    class NoCentral:
        async def apply(self, records: object) -> None:
            raise AssertionError("not called")

    def chat_takes(writes: MessageWrites) -> MessageWrites:  # checked by mypy, exercised here
        return writes

    def journal_takes(writes: JournalWrites) -> JournalWrites:  # checked by mypy as well
        return writes

    writer = DurableWriter(NoCentral(), SqliteOutbox("unused.sqlite", 1, 1))
    assert chat_takes(writer) is writer and journal_takes(writer) is writer
