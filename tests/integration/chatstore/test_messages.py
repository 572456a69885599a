"""The ``MessageStore`` suite: history pages, idempotency keys, unread counts and search; run
on the in-memory fake, SQLite and PostgreSQL (the ``stores`` fixture). What only SQL has (NUL
characters on PostgreSQL) runs on the databases alone."""

from __future__ import annotations

import pytest

from procall.chat.model import MAX_TEXT_BYTES, ChatMessage
from procall.errors import InvalidArgument
from procall.journal.model import JournalEntry, JournalKind
from procall.storage.sql import SqlDatabase
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.chat_conversations import SqlConversationStore
from procall.storage.sql.chat_messages import SqlMessageStore
from procall.storage.sql.journal import SqlJournalStore
from tests.integration.chatstore.conftest import ChatStores, group, message

# every kind of text a client may send (NUL aside: see test_nul_characters)
TEXTS = [
    "plain ascii",
    "Grüße, Ærøskøbing — ‘quotes’ “double” …",
    "emoji 🚀👩‍👩‍👧‍👦 flags 🇩🇪 skin 👍🏽",
    "שלום עליכם مرحبا RTL mixed with LTR",
    "中文 日本語 한국어",
    "combining e\u0301 vs é, ZWJ \u200d, BOM \ufeff, NBSP \u00a0",
    "control chars: \x01\x02\x07\x08\t\n\r\x0b\x0c\x1b[31m\x1f\x7f\x80\x9f",
    "   leading and trailing spaces   ",
    "line one\r\nline two\nline three\r",
    "sql-ish: ' \" ; -- /* */ % _ \\ [x]",
    "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010fffd",
    "ä" * (MAX_TEXT_BYTES // 2),  # exactly 16 KiB of UTF-8
]


def _ids(messages: list[ChatMessage]) -> list[int]:
    return [m.message_id for m in messages]


async def test_any_unicode_text_round_trips_exactly(stores: ChatStores) -> None:
    store = stores.messages
    sent = [
        message("c", index, text=text, at=1700000000.0 + index / 7)
        for index, text in enumerate(TEXTS, start=1)
    ]
    await stores.write(sent)
    stored = await store.page("c", backward=False, from_id=None, limit=100)
    assert stored == sent  # text, floats and request ids exactly as written
    assert len(stored[-1].text.encode()) == MAX_TEXT_BYTES


async def test_nul_characters(database: SqlDatabase) -> None:
    """PostgreSQL cannot store U+0000 in text; the stores refuse it rather than alter it."""
    writer = SqlCentralWriter(database)
    store = SqlMessageStore(database)
    conversations = SqlConversationStore(database)
    journal = SqlJournalStore(database)
    await conversations.create(group("c", ("alice",)))
    with_nul = message("c", 1, text="before\x00after")
    note = JournalEntry("e1", "alice", JournalKind.NOTE, 1.0, text="a\x00b")
    titled = group("t", ("alice",), title="nul\x00title")
    if database.dialect_name == "postgresql":
        with pytest.raises(InvalidArgument) as refused:
            await writer.apply([message("c", 2), with_nul])
        assert refused.value.violations[0].field == "text"
        with pytest.raises(InvalidArgument):
            await writer.apply([note])
        with pytest.raises(InvalidArgument):
            await conversations.create(titled)
        with pytest.raises(InvalidArgument):
            await conversations.set_title("c", "x\x00", now=1.0)
        # nothing of the batches was stored
        assert await store.page("c", backward=True, from_id=None, limit=10) == []
        assert await journal.get("alice", "e1") is None
        assert await conversations.get("t") is None
        # no stored text can contain NUL there, so searching for one finds nothing
        assert await store.search("alice", "\x00", None, None, 10) == []
    else:
        await writer.apply([with_nul, note])
        assert await store.page("c", backward=True, from_id=None, limit=10) == [with_nul]
        assert await store.search("alice", "e\x00a", None, None, 10) == [with_nul]
        assert await journal.get("alice", "e1") == note
        assert (await conversations.create(titled)).title == "nul\x00title"
        stored = await conversations.get("t")
        assert stored is not None and stored.title == "nul\x00title"


async def test_pages_in_both_directions_without_gaps_or_duplicates(
    stores: ChatStores,
) -> None:
    store = stores.messages
    ids = [1, 2, 3, 5, 8, 9, 10, 11, 15, 16, 17]  # ids may have gaps
    await stores.write([message("c", i) for i in ids] + [message("other", 4)])

    newest = await store.page("c", backward=True, from_id=None, limit=3)
    assert _ids(newest) == [17, 16, 15]
    oldest = await store.page("c", backward=False, from_id=None, limit=3)
    assert _ids(oldest) == [1, 2, 3]

    for size in (1, 2, 4, 20):
        backward: list[int] = []
        cursor: int | None = None
        while page := await store.page("c", backward=True, from_id=cursor, limit=size):
            backward += _ids(page)
            cursor = page[-1].message_id
        assert backward == ids[::-1]
        forward: list[int] = []
        cursor = None
        while page := await store.page("c", backward=False, from_id=cursor, limit=size):
            forward += _ids(page)
            cursor = page[-1].message_id
        assert forward == ids
    # strictly older / newer than a cursor, from any position (not only a stored id)
    assert _ids(await store.page("c", backward=True, from_id=8, limit=10)) == [5, 3, 2, 1]
    assert _ids(await store.page("c", backward=False, from_id=12, limit=2)) == [15, 16]
    assert await store.page("c", backward=True, from_id=1, limit=10) == []
    assert await store.page("c", backward=False, from_id=17, limit=10) == []
    assert await store.page("empty", backward=True, from_id=None, limit=10) == []


async def test_find_by_request_and_max_message_id(stores: ChatStores) -> None:
    store = stores.messages
    first = message("c", 1, "alice", request_id="r-1")
    await stores.write([first, message("c", 2, "bob", request_id="r-1"), message("c", 6)])
    assert await store.find_by_request("c", "alice", "r-1") == first
    assert (await store.find_by_request("c", "bob", "r-1") or first).message_id == 2
    assert await store.find_by_request("c", "carol", "r-1") is None
    assert await store.find_by_request("other", "alice", "r-1") is None
    assert await store.find_by_request("c", "alice", "") is None
    assert await store.max_message_id("c") == 6
    assert await store.max_message_id("none") == 0


async def test_unread_counts_exclude_own_messages_in_one_call(stores: ChatStores) -> None:
    store = stores.messages
    await stores.write(
        [message("a", i, "bob" if i % 3 else "alice") for i in range(1, 11)]  # 3,6,9 own
        + [message("b", i, "carol") for i in range(1, 4)]
        + [message("c", 1, "alice")]
    )
    counts = await store.count_unread("alice", {"a": 0, "b": 2, "c": 0, "d": 0})
    assert counts == {"a": 7, "b": 1, "c": 0, "d": 0}
    assert await store.count_unread("alice", {"a": 6}) == {"a": 3}
    assert await store.count_unread("alice", {"a": 10}) == {"a": 0}
    assert await store.count_unread("alice", {}) == {}
    # more conversations than one statement takes
    many = {f"x{i}": 0 for i in range(1200)} | {"a": 4}
    counts = await store.count_unread("alice", many)
    assert counts["a"] == 4 and sum(counts.values()) == 4 and len(counts) == 1201


async def test_search_is_literal_case_insensitive_and_member_only(stores: ChatStores) -> None:
    conversations = stores.conversations
    store = stores.messages
    await conversations.create(group("mine", ("alice", "bob")))
    await conversations.create(group("also-mine", ("alice", "carol")))
    await conversations.create(group("theirs", ("bob", "carol")))
    texts = {
        1: "50% off today",
        2: "5000 off",
        3: "file_name.txt",
        4: "fileXname.txt",
        5: "back\\slash",
        6: "Hello WORLD",
        7: "[brackets] and ^caret",
        8: "bracket",
    }
    await stores.write(
        [message("mine", i, text=t, at=100.0 + i) for i, t in texts.items()]
        + [message("also-mine", 1, text="hello again", at=500.0)]
        + [message("theirs", 1, text="hello world, 50% off", at=600.0)]
    )

    async def found(query: str, conversation_id: str | None = None) -> list[tuple[str, int]]:
        result = await store.search("alice", query, conversation_id, None, 50)
        return [(m.conversation_id, m.message_id) for m in result]

    assert await found("50%") == [("mine", 1)]
    assert await found("%") == [("mine", 1)]
    assert await found("_") == [("mine", 3)]
    assert await found("e_n") == [("mine", 3)]
    assert await found("\\") == [("mine", 5)]
    assert await found("[b") == [("mine", 7)]
    assert await found("^") == [("mine", 7)]
    assert await found("hello") == [("also-mine", 1), ("mine", 6)]  # newest first
    assert await found("world") == [("mine", 6)]  # not in conversations of others
    assert await found("HeLLo", "mine") == [("mine", 6)]
    assert await found("hello", "theirs") == []  # not a member there
    assert await found("absent") == []
    assert await store.search("alice", "hello", None, None, 0) == []


async def test_search_pages_by_time_conversation_and_id(stores: ChatStores) -> None:
    conversations = stores.conversations
    store = stores.messages
    for name in ("a", "b", "c"):
        await conversations.create(group(name, ("alice",)))
    # equal timestamps across and within conversations test every tie-breaker
    records = [
        message(name, i, text=f"needle {name}{i}", at=10.0 + (i // 2))
        for name in ("a", "b", "c")
        for i in range(1, 7)
    ]
    await stores.write(records)
    expected = sorted(
        records, key=lambda m: (m.created_at, m.conversation_id, m.message_id), reverse=True
    )
    for size in (1, 4, 7):
        seen: list[ChatMessage] = []
        cursor: tuple[float, str, int] | None = None
        while page := await store.search("alice", "NEEDLE", None, cursor, size):
            seen += page
            last = page[-1]
            cursor = (last.created_at, last.conversation_id, last.message_id)
        assert seen == expected, size
