"""The ``JournalStore`` suite: pages filtered by kind and time, cursors, get and delete; run
on the in-memory fake, SQLite and PostgreSQL (the ``stores`` fixture)."""

from __future__ import annotations

from procall.journal.model import JournalEntry, JournalKind
from procall.journal.ports import JournalStore
from tests.integration.chatstore.conftest import ChatStores

KINDS = list(JournalKind)


def _entries() -> list[JournalEntry]:
    """Alice's journal: 30 entries, several sharing a time; and one of Bob's."""
    entries = [
        JournalEntry(
            entry_id=f"e{index:02}",
            user_id="alice",
            kind=KINDS[index % len(KINDS)],
            event_time=1000.0 + index // 3,
            peer_user_id="bob" if index % 2 else "",
            call_id=f"call-{index}" if index % 2 else "",
            duration_ms={1: 0, 5: 1000, 9: 93_000}.get(index),
            text=f"entry {index}",
            request_id=f"r{index}",
        )
        for index in range(30)
    ]
    entries.append(JournalEntry("b1", "bob", JournalKind.NOTE, 1005.0, text="bob's"))
    return entries


def _newest_first(entries: list[JournalEntry]) -> list[JournalEntry]:
    return sorted(entries, key=lambda e: (e.event_time, e.entry_id), reverse=True)


async def _all_pages(
    journal: JournalStore,
    kinds: list[JournalKind],
    start: float | None,
    end: float | None,
    size: int,
) -> list[JournalEntry]:
    seen: list[JournalEntry] = []
    before: tuple[float, str] | None = None
    while page := await journal.page("alice", kinds, start, end, before, size):
        seen += page
        before = (page[-1].event_time, page[-1].entry_id)
    return seen


async def test_pages_filter_by_kind_and_time_with_exact_cursors(stores: ChatStores) -> None:
    journal = stores.journal
    entries = _entries()
    await stores.write(entries)
    alices = [e for e in entries if e.user_id == "alice"]

    everything = await journal.page("alice", [], None, None, None, 100)
    assert everything == _newest_first(alices)  # every field round-trips
    assert {e.duration_ms for e in everything} >= {None, 0, 1000}  # NULL and 0 kept apart

    calls = [JournalKind.CALL_MISSED, JournalKind.CALL_RECEIVED]
    window = (1002.0, 1007.0)  # start included, end excluded
    expected = _newest_first(
        [e for e in alices if e.kind in calls and window[0] <= e.event_time < window[1]]
    )
    assert expected and all(e.kind in calls for e in expected)
    for size in (1, 2, 5, 50):
        assert await _all_pages(journal, calls, *window, size) == expected
        assert await _all_pages(journal, [], None, None, size) == _newest_first(alices)
    assert await _all_pages(journal, [], 1008.0, None, 3) == _newest_first(
        [e for e in alices if e.event_time >= 1008.0]
    )
    assert await _all_pages(journal, [JournalKind.NOTE], None, 1001.0, 3) == _newest_first(
        [e for e in alices if e.kind is JournalKind.NOTE and e.event_time < 1001.0]
    )
    # a cursor in the middle of entries sharing a time
    middle = everything[4]
    after_middle = await journal.page(
        "alice", [], None, None, (middle.event_time, middle.entry_id), 3
    )
    assert after_middle == everything[5:8]
    assert await journal.page("alice", [], None, None, None, 0) == []
    assert await journal.page("carol", [], None, None, None, 10) == []


async def test_get_and_delete_only_the_users_own_entries(stores: ChatStores) -> None:
    journal = stores.journal
    entries = _entries()
    await stores.write(entries)
    assert await journal.get("alice", "e07") == entries[7]
    assert await journal.get("bob", "e07") is None  # someone else's
    assert await journal.get("alice", "missing") is None

    assert await journal.delete("bob", "e07") is False
    assert await journal.delete("alice", "e07") is True
    assert await journal.delete("alice", "e07") is False
    assert await journal.get("alice", "e07") is None
    assert len(await journal.page("alice", [], None, None, None, 100)) == 29
    assert await journal.get("bob", "b1") is not None
