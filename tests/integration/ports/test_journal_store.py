"""One behaviour suite for the ``JournalStore`` port, run against the in-memory fake of the
chat and journal unit tests (``tests/unit/chat/fakes.py``) and against ``SqlJournalStore``
on a migrated SQLite database (entries written by the SQL central writer), so that the fake
cannot drift from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from procall.journal.model import JournalEntry, JournalKind
from procall.journal.ports import JournalStore
from procall.storage.sql import SqlDatabase, upgrade_to_head
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.journal import SqlJournalStore
from tests.unit.chat.fakes import MemoryDurableWrites, MemoryJournalStore, Tables

KINDS = list(JournalKind)


@dataclass
class Subject:
    """A ``JournalStore`` and the central write path that fills it."""

    store: JournalStore
    write: Callable[[Sequence[JournalEntry]], Awaitable[object]]


@pytest.fixture(params=["memory", "sql"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    if request.param == "memory":
        tables = Tables()
        yield Subject(MemoryJournalStore(tables), MemoryDurableWrites(tables).write)
        return
    database = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'journal.db'}", name="database")
    await upgrade_to_head(database)
    try:
        yield Subject(SqlJournalStore(database), SqlCentralWriter(database).apply)
    finally:
        await database.dispose()


def entry(entry_id: str, user: str, at: float, kind: JournalKind = KINDS[0]) -> JournalEntry:
    return JournalEntry(entry_id, user, kind, at, text=f"note {entry_id}", request_id=entry_id)


async def test_entries_page_newest_first_with_a_cursor(subject: Subject) -> None:
    entries = [entry(f"e{i}", "alice", 100.0 + i // 2) for i in range(6)]  # pairs share a time
    await subject.write([*entries, entry("x1", "bob", 101.0)])
    store = subject.store
    newest_first = sorted(entries, key=lambda e: (e.event_time, e.entry_id), reverse=True)
    first = await store.page("alice", [], None, None, None, 4)
    assert first == newest_first[:4]
    cursor = (first[-1].event_time, first[-1].entry_id)
    assert await store.page("alice", [], None, None, cursor, 4) == newest_first[4:]
    assert await store.page("zoe", [], None, None, None, 4) == []


async def test_a_window_and_kinds_restrict_the_page(subject: Subject) -> None:
    a, b = KINDS[0], KINDS[1]
    await subject.write(
        [
            entry("e1", "alice", 100.0, a),
            entry("e2", "alice", 101.0, b),
            entry("e3", "alice", 102.0, a),
        ]
    )
    store = subject.store
    ids = lambda page: [e.entry_id for e in page]  # noqa: E731
    assert ids(await store.page("alice", [], 101.0, None, None, 10)) == ["e3", "e2"], "start in"
    assert ids(await store.page("alice", [], None, 102.0, None, 10)) == ["e2", "e1"], "end out"
    assert ids(await store.page("alice", [a], None, None, None, 10)) == ["e3", "e1"]
    assert ids(await store.page("alice", [a, b], 100.5, 101.5, None, 10)) == ["e2"]


async def test_an_entry_is_read_and_deleted_only_by_its_user(subject: Subject) -> None:
    mine = entry("e1", "alice", 100.0)
    await subject.write([mine])
    store = subject.store
    assert await store.get("alice", "e1") == mine
    assert await store.get("bob", "e1") is None
    assert not await store.delete("bob", "e1")
    assert await store.delete("alice", "e1")
    assert await store.get("alice", "e1") is None
    assert not await store.delete("alice", "e1")


async def test_an_entry_written_twice_is_stored_once(subject: Subject) -> None:
    first = entry("e1", "alice", 100.0)
    await subject.write([first])
    await subject.write([first])
    assert await subject.store.page("alice", [], None, None, None, 10) == [first]
