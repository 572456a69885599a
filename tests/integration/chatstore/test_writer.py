"""SqlCentralWriter: batches applied once, in one transaction, whatever is replayed."""

from __future__ import annotations

import asyncio

import pytest

from procall.chat.model import ReadMarker
from procall.journal.model import JournalEntry, JournalKind, entry_id_for
from procall.outbox.ports import Record
from procall.storage.sql import SqlDatabase
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.chat_conversations import SqlConversationStore
from procall.storage.sql.chat_messages import SqlMessageStore
from procall.storage.sql.journal import SqlJournalStore
from tests.integration.chatstore.conftest import group, message


def _entry(user_id: str, request_id: str, at: float, **fields: object) -> JournalEntry:
    return JournalEntry(
        entry_id=entry_id_for(user_id, request_id),
        user_id=user_id,
        kind=JournalKind.NOTE,
        event_time=at,
        request_id=request_id,
        text=f"note {request_id}",
        **fields,  # type: ignore[arg-type]
    )


async def test_the_same_batch_applied_twice_is_stored_once(database: SqlDatabase) -> None:
    conversations = SqlConversationStore(database)
    writer = SqlCentralWriter(database)
    messages = SqlMessageStore(database)
    journal = SqlJournalStore(database)
    await conversations.create(group("g", ("alice", "bob"), at=100.0))
    batch: list[Record] = [
        message("g", 1, "alice", at=200.0),
        ReadMarker("g", "alice", 1, 201.0),
        message("g", 2, "bob", at=202.0),
        _entry("alice", "n-1", 203.0),
        ReadMarker("g", "bob", 2, 204.0),
    ]
    await writer.apply(batch)
    await writer.apply(batch)
    await writer.apply(list(reversed(batch)))
    stored = await messages.page("g", backward=False, from_id=None, limit=10)
    assert [m.message_id for m in stored] == [1, 2]
    assert len(await journal.page("alice", [], None, None, None, 10)) == 1
    conversation = await conversations.get("g")
    assert conversation is not None
    assert (conversation.last_message_id, conversation.updated_at) == (2, 202.0)
    assert await conversations.read_marker("g", "alice") == 1
    assert await conversations.read_marker("g", "bob") == 2


async def test_a_repeated_request_id_with_another_id_is_skipped(database: SqlDatabase) -> None:
    conversations = SqlConversationStore(database)
    writer = SqlCentralWriter(database)
    messages = SqlMessageStore(database)
    await conversations.create(group("g", ("alice", "bob"), at=100.0))
    first = message("g", 1, "alice", "once", request_id="same", at=200.0)
    await writer.apply([first])
    # two servers queued the same retried send under different ids, in one batch or later
    await writer.apply(
        [
            message("g", 7, "alice", "once", request_id="same", at=300.0),
            message("g", 2, "bob", "bob's own key", request_id="same", at=210.0),
            message("g", 3, "bob", "dup in batch", request_id="same", at=400.0),
        ]
    )
    stored = await messages.page("g", backward=False, from_id=None, limit=10)
    assert [(m.message_id, m.sender_id) for m in stored] == [(1, "alice"), (2, "bob")]
    assert await messages.find_by_request("g", "alice", "same") == first
    conversation = await conversations.get("g")
    assert conversation is not None
    # the skipped messages moved nothing
    assert (conversation.last_message_id, conversation.updated_at) == (2, 210.0)
    # messages without a request id are never merged
    await writer.apply([message("g", 8, request_id=""), message("g", 9, request_id="")])
    assert await messages.max_message_id("g") == 9
    assert (await messages.page("g", backward=True, from_id=None, limit=1))[0].request_id == ""


async def test_conversation_bump_only_raises(database: SqlDatabase) -> None:
    conversations = SqlConversationStore(database)
    writer = SqlCentralWriter(database)
    await conversations.create(group("g", ("alice",), at=100.0))
    await writer.apply([message("g", 5, at=500.0)])
    # an older message arriving late (from another server's outbox) lowers nothing
    await writer.apply([message("g", 3, at=300.0)])
    conversation = await conversations.get("g")
    assert conversation is not None
    assert (conversation.last_message_id, conversation.updated_at) == (5, 500.0)
    await conversations.set_title("g", "t", now=900.0)
    await writer.apply([message("g", 6, at=600.0)])  # clocks differ between servers
    conversation = await conversations.get("g")
    assert conversation is not None
    assert (conversation.last_message_id, conversation.updated_at) == (6, 900.0)


async def test_markers_never_move_back_and_strangers_are_ignored(database: SqlDatabase) -> None:
    conversations = SqlConversationStore(database)
    writer = SqlCentralWriter(database)
    await conversations.create(group("g", ("alice", "bob")))
    await writer.apply(
        [
            ReadMarker("g", "alice", 5, 10.0),
            ReadMarker("g", "alice", 9, 11.0),
            ReadMarker("g", "alice", 7, 12.0),  # later but lower, in the same batch
            ReadMarker("g", "mallory", 9, 10.0),  # not a member
            ReadMarker("unknown", "alice", 9, 10.0),  # no such conversation
            message("g", 1),
        ]
    )
    assert await conversations.read_marker("g", "alice") == 9
    await writer.apply([ReadMarker("g", "alice", 3, 20.0)])
    assert await conversations.read_marker("g", "alice") == 9
    await writer.apply([ReadMarker("g", "alice", 10, 21.0), ReadMarker("g", "bob", 1, 21.0)])
    assert await conversations.read_marker("g", "alice") == 10
    assert await conversations.read_marker("g", "bob") == 1
    assert await conversations.read_marker("g", "mallory") == 0
    views = await conversations.list_for_member("alice", 10, None)
    assert [v.read_message_id for v in views] == [10]


async def test_journal_entries_are_stored_once_by_id(database: SqlDatabase) -> None:
    writer = SqlCentralWriter(database)
    journal = SqlJournalStore(database)
    call = JournalEntry(
        entry_id=entry_id_for("bob", "call-1"),
        user_id="bob",
        kind=JournalKind.CALL_RECEIVED,
        event_time=1700000000.5,
        peer_user_id="alice",
        call_id="call-1",
        duration_ms=93_000,
        text="ünïcode\n\ttext 🚀",
        request_id="call-1",
    )
    retried = JournalEntry(**{**call.__dict__, "text": "a retried write with other text"})
    await writer.apply([call, retried])
    await writer.apply([retried])
    assert await journal.get("bob", call.entry_id) == call
    assert await journal.page("bob", [], None, None, None, 10) == [call]


async def test_big_mixed_batches_apply_in_one_go(database: SqlDatabase) -> None:
    conversations = SqlConversationStore(database)
    writer = SqlCentralWriter(database)
    messages = SqlMessageStore(database)
    journal = SqlJournalStore(database)
    names = [f"c{i:02}" for i in range(40)]
    for name in names:
        await conversations.create(group(name, ("alice", "bob")))
    # more rows than one multi-row statement takes (1,000): several pages, one transaction
    batch: list[Record] = [
        message(name, i, "bob", at=5000.0 + i) for i in range(1, 61) for name in names
    ]
    batch += [ReadMarker(name, "alice", 30, 9000.0) for name in names]
    batch += [_entry("alice", f"r{i}", 100.0 + i) for i in range(1500)]
    await writer.apply(batch)
    await writer.apply(batch[:1000])
    unread = await messages.count_unread("alice", dict.fromkeys(names, 30))
    assert set(unread.values()) == {30}
    assert await messages.max_message_id("c39") == 60
    assert len(await journal.page("alice", [], None, None, None, 2000)) == 1500
    views = await conversations.list_for_member("alice", 100, None)
    assert {(v.conversation.last_message_id, v.read_message_id) for v in views} == {(60, 30)}


async def test_concurrent_overlapping_batches_store_everything_once(
    database: SqlDatabase,
) -> None:
    conversations = SqlConversationStore(database)
    writer = SqlCentralWriter(database)
    messages = SqlMessageStore(database)
    names = [f"c{i}" for i in range(10)]
    for name in names:
        await conversations.create(group(name, ("alice", "bob")))
    batch: list[Record] = [message(name, i) for name in names for i in range(1, 21)]
    batch += [ReadMarker(name, "alice", 5, 1.0) for name in names]
    # two servers flushing the same records, in opposite orders, at the same time
    await asyncio.gather(writer.apply(batch), writer.apply(list(reversed(batch))))
    for name in names:
        stored = await messages.page(name, backward=False, from_id=None, limit=100)
        assert [m.message_id for m in stored] == list(range(1, 21))
        assert await conversations.read_marker(name, "alice") == 5


async def test_an_empty_batch_needs_no_database_and_non_records_are_refused() -> None:
    database = SqlDatabase("sqlite+aiosqlite:////nonexistent/dir/x.db", name="x")
    writer = SqlCentralWriter(database)
    try:
        await writer.apply([])
        with pytest.raises(TypeError):
            await writer.apply([message("c", 1), "not a record"])  # type: ignore[list-item]
    finally:
        await database.dispose()
