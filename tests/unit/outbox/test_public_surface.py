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


def test_chat_and_journal_do_not_depend_on_the_outbox_or_each_other() -> None:
    """The narrow write ports keep the areas apart: only the outbox knows them both."""
    import ast
    from pathlib import Path

    import procall

    root = Path(procall.__file__).parent
    forbidden = {
        "chat": ("procall.outbox", "procall.journal"),
        "journal": ("procall.outbox", "procall.chat"),
    }
    for area, banned in forbidden.items():
        for path in (root / area).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert not node.module.startswith(banned), f"{path.name} imports {node.module}"
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        assert not alias.name.startswith(banned), (
                            f"{path.name} imports {alias.name}"
                        )
