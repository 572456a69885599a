"""Pins the public names of the outbox packages, so changes to them are deliberate."""

from __future__ import annotations

import importlib
import inspect

import pytest

SURFACE = {
    "procall.outbox": {
        "CentralWriter",
        "CodecError",
        "DurableWriter",
        "Outbox",
        "Persisted",
        "Record",
        "decode_record",
        "encode_record",
    },
    "procall.outbox.writer": {"DurableWriter", "Persisted"},
    "procall.outbox.codec": {
        "KIND_JOURNAL_ENTRY",
        "KIND_MESSAGE",
        "KIND_READ_MARKER",
        "CodecError",
        "decode_record",
        "encode_record",
        "encode_text",
        "record_kind",
    },
    "procall.storage.outbox": {"SqliteOutbox"},
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        item = getattr(loaded, name)
        if inspect.isclass(item) or inspect.isfunction(item):
            assert item.__doc__, f"{module}.{name} has no docstring"


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
