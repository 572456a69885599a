"""The ``ConversationStore`` suite: create, members, titles, markers, the member's
conversation list; run on the in-memory fake, SQLite and PostgreSQL (the ``stores``
fixture)."""

from __future__ import annotations

import pytest

from procall.chat.model import Conversation, ConversationKind, ReadMarker, direct_conversation_id
from procall.errors import NotFound
from tests.integration.chatstore.conftest import ChatStores, group, message


async def test_create_and_get_round_trip(stores: ChatStores) -> None:
    store = stores.conversations
    new = Conversation(
        "g-1",
        ConversationKind.GROUP,
        "Ünïcode 🚀 title\t«»",
        ("carol", "alice", "bob", "alice"),
        created_at=1700000000.123456789,
        updated_at=1700000000.123456789,
    )
    created = await store.create(new)
    assert created.member_ids == ("carol", "alice", "bob")  # order kept, duplicate dropped
    fetched = await store.get("g-1")
    assert fetched == created
    assert fetched.updated_at == 1700000000.123456789  # timestamps come back bit for bit
    assert fetched.kind is ConversationKind.GROUP and fetched.last_message_id == 0
    assert await store.get("missing") is None


async def test_create_of_an_existing_id_returns_it_unchanged(stores: ChatStores) -> None:
    store = stores.conversations
    pair = direct_conversation_id("alice", "bob")
    first = await store.create(
        Conversation(pair, ConversationKind.DIRECT, "", ("alice", "bob"), 10.0, 10.0)
    )
    again = await store.create(
        Conversation(pair, ConversationKind.DIRECT, "other", ("bob", "alice", "eve"), 20.0, 20.0)
    )
    assert again == first
    assert (await store.get(pair)) == first


async def test_members_keep_joining_order_and_new_ones_start_at_the_newest_message(
    stores: ChatStores,
) -> None:
    store = stores.conversations
    await store.create(group("g", ("alice", "bob")))
    await stores.write([message("g", i) for i in (1, 2, 3)])

    added = await store.add_members("g", ["dave", "bob", "carol", "dave"], now=3000.0)
    assert added.member_ids == ("alice", "bob", "dave", "carol")
    assert added.updated_at == 3000.0 and added.last_message_id == 3
    assert await store.read_marker("g", "dave") == 3  # history before joining is read
    assert await store.read_marker("g", "carol") == 3
    assert await store.read_marker("g", "bob") == 0  # present members are left alone

    removed = await store.remove_members("g", ["bob", "nobody"], now=3100.0)
    assert removed.member_ids == ("alice", "dave", "carol")
    assert removed.updated_at == 3100.0
    assert await store.read_marker("g", "bob") == 0  # no marker once gone

    # re-joining goes to the end, with a fresh marker
    rejoined = await store.add_members("g", ["bob"], now=3200.0)
    assert rejoined.member_ids == ("alice", "dave", "carol", "bob")
    assert await store.read_marker("g", "bob") == 3


async def test_changes_that_change_nothing_keep_updated_at(stores: ChatStores) -> None:
    store = stores.conversations
    await store.create(group("g", ("alice", "bob"), at=500.0))
    assert (await store.add_members("g", ["alice"], now=900.0)).updated_at == 500.0
    assert (await store.remove_members("g", ["zed"], now=900.0)).updated_at == 500.0
    # a clock behind the stored time never moves updated_at backward
    assert (await store.set_title("g", "renamed", now=100.0)).updated_at == 500.0


async def test_set_title(stores: ChatStores) -> None:
    store = stores.conversations
    await store.create(group("g", ("alice",), at=1.0))
    renamed = await store.set_title("g", "Ω new name", now=2.0)
    assert (renamed.title, renamed.updated_at, renamed.member_ids) == (
        "Ω new name",
        2.0,
        ("alice",),
    )
    assert await store.get("g") == renamed


@pytest.mark.parametrize("change", ["set_title", "add_members", "remove_members"])
async def test_changes_of_an_unknown_conversation_raise_not_found(
    stores: ChatStores, change: str
) -> None:
    store = stores.conversations
    with pytest.raises(NotFound):
        if change == "set_title":
            await store.set_title("nope", "x", now=1.0)
        elif change == "add_members":
            await store.add_members("nope", ["alice"], now=1.0)
        else:
            await store.remove_members("nope", ["alice"], now=1.0)
    assert await store.get("nope") is None


async def test_read_marker_follows_the_writer(stores: ChatStores) -> None:
    store = stores.conversations
    await store.create(group("g", ("alice", "bob")))
    assert await store.read_marker("g", "bob") == 0
    await stores.write([ReadMarker("g", "bob", 7, 50.0)])
    assert await store.read_marker("g", "bob") == 7
    assert await store.read_marker("g", "stranger") == 0
    assert await store.read_marker("unknown", "bob") == 0


async def test_list_for_member_orders_by_last_change_and_pages_without_gaps(
    stores: ChatStores,
) -> None:
    store = stores.conversations
    # ties on updated_at are broken by conversation id (descending)
    times = {"c0": 10.0, "c1": 30.0, "c2": 20.0, "c3": 30.0, "c4": 5.0, "c5": 30.0, "c6": 20.0}
    for conversation_id, at in times.items():
        await store.create(group(conversation_id, ("alice", "bob"), at=at))
    await store.create(group("not-mine", ("bob",), at=99.0))
    # a new message moves a conversation to the top
    await stores.write([message("c4", 1, "bob", at=40.0)])
    await stores.write([ReadMarker("c4", "alice", 1, 41.0)])

    expected = ["c4", "c5", "c3", "c1", "c6", "c2", "c0"]
    everything = await store.list_for_member("alice", 100, None)
    assert [v.conversation.conversation_id for v in everything] == expected
    assert everything[0].read_message_id == 1 and everything[0].unread_count == 0
    assert everything[0].conversation.last_message_id == 1
    assert everything[0].conversation.member_ids == ("alice", "bob")

    for size in (1, 2, 3):
        seen: list[str] = []
        after: tuple[float, str] | None = None
        while True:
            page = await store.list_for_member("alice", size, after)
            seen += [v.conversation.conversation_id for v in page]
            if len(page) < size:
                break
            last = page[-1].conversation
            after = (last.updated_at, last.conversation_id)
        assert seen == expected, size
    assert await store.list_for_member("carol", 10, None) == []
    assert await store.list_for_member("alice", 0, None) == []
