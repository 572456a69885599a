"""The journal use cases over fakes: notes, idempotent adds, recording, paging, deletes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from procall.errors import InvalidArgument, NotFound, Unavailable
from procall.journal.model import MAX_NOTE_BYTES, JournalEntry, JournalKind, entry_id_for
from procall.journal.service import Journal
from procall.paging import encode_page_token, time_in_cursor
from tests.unit.chat.fakes import (
    FakeClock,
    MemoryDurableWrites,
    MemoryJournalStore,
    RecordingJournalEvents,
    Tables,
)


@dataclass
class JournalWorld:
    clock: FakeClock
    tables: Tables
    store: MemoryJournalStore
    writes: MemoryDurableWrites
    events: RecordingJournalEvents
    journal: Journal


@pytest.fixture
def world() -> JournalWorld:
    clock = FakeClock()
    tables = Tables()
    store = MemoryJournalStore(tables)
    writes = MemoryDurableWrites(tables)
    events = RecordingJournalEvents()
    return JournalWorld(clock, tables, store, writes, events, Journal(store, writes, events, clock))


def _call(
    user: str, n: int, when: float, kind: JournalKind = JournalKind.CALL_MISSED
) -> JournalEntry:
    return JournalEntry(f"call-{n}-{user}", user, kind, when, peer_user_id="peer", call_id=f"c{n}")


# -- adding notes --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [None, JournalKind.NOTE])
async def test_a_note_is_stored_and_announced(
    world: JournalWorld, kind: JournalKind | None
) -> None:
    entry = await world.journal.add_note("alice", kind, "call the plumber", None, "n-1")
    assert (entry.user_id, entry.kind, entry.text) == (
        "alice",
        JournalKind.NOTE,
        "call the plumber",
    )
    assert entry.event_time == world.clock.now  # when the client gave no time
    assert entry.entry_id == entry_id_for("alice", "n-1")
    assert world.tables.journal == {entry.entry_id: entry}
    assert world.events.entries == [entry]


@pytest.mark.parametrize("kind", [k for k in JournalKind if k is not JournalKind.NOTE])
async def test_clients_may_add_only_notes(world: JournalWorld, kind: JournalKind) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.journal.add_note("alice", kind, "fake call", 1.0, "n-1")
    assert refused.value.violations[0].field == "entry.kind"
    assert world.writes.batches == [] and world.events.entries == []


async def test_a_retried_add_stores_one_entry(world: JournalWorld) -> None:
    first = await world.journal.add_note("alice", None, "once", 1_700_000_100.0, "n-1")
    world.clock.advance(60)
    again = await world.journal.add_note("alice", None, "once", 1_700_000_100.0, "n-1")
    assert again.entry_id == first.entry_id
    assert list(world.tables.journal) == [first.entry_id]
    # the id is the writer's: the same request id of another user is another entry
    bobs = await world.journal.add_note("bob", None, "once", 1_700_000_100.0, "n-1")
    assert bobs.entry_id != first.entry_id
    assert len(world.tables.journal) == 2


async def test_notes_without_a_request_id_are_distinct(world: JournalWorld) -> None:
    one = await world.journal.add_note("alice", None, "same", 5.0, "")
    two = await world.journal.add_note("alice", None, "same", 5.0, "")
    assert one.entry_id != two.entry_id and one.request_id and two.request_id
    assert len(world.tables.journal) == 2


@pytest.mark.parametrize(
    ("text", "request_id", "field"),
    [
        ("", "n", "entry.text"),
        ("é" * (MAX_NOTE_BYTES // 2 + 1), "n", "entry.text"),  # few characters, many bytes
        ("nul\x00", "n", "entry.text"),
        ("ok", "n\x00", "request_id"),
        ("ok", "r" * 129, "request_id"),
    ],
)
async def test_bad_notes_are_refused(
    world: JournalWorld, text: str, request_id: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.journal.add_note("alice", None, text, None, request_id)
    assert refused.value.violations[0].field == field
    assert world.writes.batches == []


async def test_a_note_of_the_largest_size_is_kept(world: JournalWorld) -> None:
    text = "é" * (MAX_NOTE_BYTES // 2)
    entry = await world.journal.add_note("alice", None, text, None, "n")
    assert world.tables.journal[entry.entry_id].text == text


async def test_a_note_is_queued_while_the_database_is_down(world: JournalWorld) -> None:
    world.writes.central_down = True
    entry = await world.journal.add_note("alice", None, "during", None, "n-1")
    assert world.writes.queued == [entry] and world.events.entries == [entry]
    world.writes.central_down = False
    world.writes.flush()
    assert world.tables.journal == {entry.entry_id: entry}


# -- recording (the call flow) -------------------------------------------------------------------


async def test_record_writes_once_and_tells_each_entrys_user(world: JournalWorld) -> None:
    entries = [
        _call("alice", 1, 10.0, JournalKind.CALL_PLACED),
        _call("bob", 1, 10.0, JournalKind.CALL_RECEIVED),
        _call("bob", 2, 20.0),
    ]
    await world.journal.record(entries)
    assert world.writes.batches == [entries]  # one durable write for the batch
    assert world.events.entries == entries  # one event per entry
    assert [e.user_id for e in world.events.entries] == ["alice", "bob", "bob"]


async def test_record_tells_nobody_when_the_write_fails(world: JournalWorld) -> None:
    world.writes.down = True
    with pytest.raises(Unavailable):
        await world.journal.record([_call("bob", 1, 10.0)])
    assert world.events.entries == []


# -- listing -------------------------------------------------------------------------------------


async def test_entries_page_newest_first_through_equal_times(world: JournalWorld) -> None:
    odd = 0.1 + 0.2  # a float the cursor must keep exactly
    await world.journal.record([_call("alice", n, odd) for n in range(5)])
    await world.journal.record([_call("alice", 9, 100.0), _call("bob", 1, 50.0)])
    seen: list[str] = []
    token = ""
    while True:
        page, token = await world.journal.page("alice", [], None, None, 2, token)
        seen.extend(e.entry_id for e in page)
        if not token:
            break
    assert seen[0] == "call-9-alice"
    assert sorted(seen[1:]) == sorted(f"call-{n}-alice" for n in range(5))
    assert len(seen) == 6


async def test_kinds_and_time_window_filter(world: JournalWorld) -> None:
    await world.journal.record(
        [
            _call("alice", 1, 10.0, JournalKind.CALL_MISSED),
            _call("alice", 2, 20.0, JournalKind.CALL_PLACED),
            _call("alice", 3, 30.0, JournalKind.CALL_MISSED),
        ]
    )
    missed, _ = await world.journal.page("alice", [JournalKind.CALL_MISSED] * 2, None, None, 0, "")
    assert [e.entry_id for e in missed] == ["call-3-alice", "call-1-alice"]
    window, _ = await world.journal.page("alice", [], 10.0, 30.0, 0, "")
    assert [e.entry_id for e in window] == ["call-2-alice", "call-1-alice"]  # end excluded
    assert world.store.pages[0][1] == (JournalKind.CALL_MISSED,)  # duplicates dropped


@pytest.mark.parametrize(("start", "end"), [(30.0, 10.0), (10.0, 10.0)])
async def test_an_empty_or_reversed_window_is_refused(
    world: JournalWorld, start: float, end: float
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.journal.page("alice", [], start, end, 0, "")
    assert refused.value.violations[0].field == "end_time"


async def test_page_sizes_default_cap_and_refuse_negative(world: JournalWorld) -> None:
    await world.journal.record([_call("alice", n, float(n)) for n in range(600)])
    default, token = await world.journal.page("alice", [], None, None, 0, "")
    assert len(default) == 50 and token
    capped, token = await world.journal.page("alice", [], None, None, 10_000, "")
    assert len(capped) == 500 and token
    with pytest.raises(InvalidArgument) as negative:
        await world.journal.page("alice", [], None, None, -1, "")
    assert negative.value.violations[0].field == "page_size"


async def test_tokens_are_valid_only_for_the_same_request(world: JournalWorld) -> None:
    await world.journal.record([_call("alice", n, float(n)) for n in range(5)])
    _, token = await world.journal.page("alice", [JournalKind.CALL_MISSED], 0.0, 10.0, 2, "")
    assert token
    scope = {"user": "alice", "kinds": "3", "start": "0.0", "end": "10.0"}
    for user, kinds, start, end, bad in [
        ("bob", [JournalKind.CALL_MISSED], 0.0, 10.0, token),
        ("alice", [], 0.0, 10.0, token),
        ("alice", [JournalKind.CALL_MISSED], 1.0, 10.0, token),
        ("alice", [JournalKind.CALL_MISSED], 0.0, None, token),
        ("alice", [JournalKind.CALL_MISSED], 0.0, 10.0, "garbage"),
        (
            "alice",
            [JournalKind.CALL_MISSED],
            0.0,
            10.0,
            encode_page_token("journal", scope, (1, "x")),
        ),
        (
            "alice",
            [JournalKind.CALL_MISSED],
            0.0,
            10.0,
            encode_page_token("journal", scope, ("x",)),
        ),
        (
            "alice",
            [JournalKind.CALL_MISSED],
            0.0,
            10.0,
            encode_page_token("journal", scope, (time_in_cursor(1.0), 7)),
        ),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            await world.journal.page(user, kinds, start, end, 2, bad)
        assert refused.value.violations[0].field == "page_token"
    # the same request continues
    rest, _ = await world.journal.page("alice", [JournalKind.CALL_MISSED], 0.0, 10.0, 2, token)
    assert [e.entry_id for e in rest] == ["call-2-alice", "call-1-alice"]


# -- deleting ------------------------------------------------------------------------------------


async def test_delete_removes_only_ones_own_entries(world: JournalWorld) -> None:
    entry = await world.journal.add_note("alice", None, "private", None, "n-1")
    with pytest.raises(NotFound) as foreign:
        await world.journal.delete("bob", entry.entry_id)
    assert foreign.value.metadata == {"entry_id": entry.entry_id}
    await world.journal.delete("alice", entry.entry_id)
    assert world.tables.journal == {}
    with pytest.raises(NotFound):
        await world.journal.delete("alice", entry.entry_id)  # already gone
    with pytest.raises(InvalidArgument):
        await world.journal.delete("alice", "")


async def test_delete_is_unavailable_while_the_database_is_down(world: JournalWorld) -> None:
    entry = await world.journal.add_note("alice", None, "keep", None, "n-1")
    world.store.down = True
    with pytest.raises(Unavailable):
        await world.journal.delete("alice", entry.entry_id)
    assert entry.entry_id in world.tables.journal
