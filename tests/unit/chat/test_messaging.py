"""Sending, retries, lost sequences, read markers, typing, history and search — over fakes,
including the failures between two steps that the integration tests cannot stage."""

from __future__ import annotations

import asyncio

import pytest

from procall.chat.model import ReadMarker
from procall.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from procall.paging import encode_page_token
from tests.unit.chat.conftest import ChatWorld
from tests.unit.chat.fakes import SQL

TTL = 24 * 3600.0


def _delivered(world: ChatWorld) -> list[tuple[int, str]]:
    return [(m.message_id, m.text) for _users, m in world.events.messages]


def _stored(world: ChatWorld, conversation_id: str) -> list[tuple[int, str]]:
    return [(m.message_id, m.text) for m in world.tables.history(conversation_id)]


# -- sending -------------------------------------------------------------------------------------


async def test_a_send_is_stored_then_delivered_to_every_member(world: ChatWorld) -> None:
    group = await world.group("alice", "bob", "carol")
    sent = await world.messaging.send("alice", group, "hello", "req-1")
    assert (sent.message_id, sent.sender_id, sent.text) == (1, "alice", "hello")
    assert sent.created_at == world.clock.now
    assert world.tables.history(group) == [sent]
    # every member's sessions, the sender's other clients included
    assert world.events.messages == [(("alice", "bob", "carol"), sent)]


async def test_the_sending_session_is_left_out_of_the_delivery(world: ChatWorld) -> None:
    group = await world.group("alice", "bob")
    sent = await world.messaging.send("alice", group, "hi", "req-1", session_id="s-alice-1")
    # alice's other sessions get it; the sending one has it in its reply
    assert world.events.messages == [(("alice", "bob"), sent)]
    assert world.events.except_sessions == ["s-alice-1"]
    again = await world.messaging.send("alice", group, "hi", "req-1", session_id="s-alice-2")
    assert again == sent and world.tables.history(group) == [sent]
    # a stored retry is announced again (its first announcement may have been lost), but
    # not to the session that retried: that one has the reply
    assert world.events.except_sessions == ["s-alice-1", "s-alice-2"]


async def test_concurrent_sends_confirm_together(world: ChatWorld) -> None:
    group = await world.group("alice", "bob", "carol")
    await world.view("bob", group)  # a known counter, so that the confirmations move it
    sent = await asyncio.gather(
        *(world.messaging.send("alice", group, f"m{i}", f"req-{i}") for i in range(5))
    )
    assert sorted(m.message_id for m in sent) == [1, 2, 3, 4, 5]
    assert world.state.confirm_calls == 1  # one Redis round trip for the five
    assert len(world.state.confirms) == 5
    assert (await world.view("bob", group)).unread_count == 5


async def test_a_sender_missing_from_the_cache_gets_no_id_before_sql_answers(
    world: ChatWorld,
) -> None:
    group = await world.group("alice", "bob")
    await world.send("alice", group, "one")
    world.sql_down()
    with pytest.raises(PermissionDenied):
        await world.messaging.send("dave", group, "let me in", "req-x")
    world.sql_down(False)
    assert await world.send("bob", group, "two") == 2, "the refused send took no id"


async def test_confirm_counts_the_message_unread_for_the_others_only(world: ChatWorld) -> None:
    group = await world.group("alice", "bob", "carol")
    for user in ("alice", "bob", "carol"):  # known counters, so that confirm moves them
        assert (await world.view(user, group)).unread_count == 0
    await world.send("alice", group, "one")
    assert world.state.confirms[-1][3] == ("bob", "carol")
    assert [(await world.view(u, group)).unread_count for u in ("alice", "bob", "carol")] == [
        0,
        1,
        1,
    ]


async def test_a_retry_of_a_send_never_confirmed_stored_is_stored_under_the_same_id(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    # the first attempt got its id, then its server died before storing it
    first = await world.state.allocate(conversation, "alice", "req-1", world.clock.now, None, TTL)
    assert first is not None and first.message_id == 1
    assert await world.send("bob", conversation, "meanwhile") == 2

    retried = await world.messaging.send("alice", conversation, "lost?", "req-1")
    assert (retried.message_id, retried.created_at) == (1, first.created_at)
    assert _stored(world, conversation) == [(1, "lost?"), (2, "meanwhile")]
    assert _delivered(world) == [(2, "meanwhile"), (1, "lost?")]

    # confirmed now: one more retry stores nothing, but announces the stored message again
    again = await world.messaging.send("alice", conversation, "lost?", "req-1")
    assert again == retried
    assert len(world.events.messages) == 3
    assert await world.send("alice", conversation, "next") == 3


async def test_a_retry_of_a_confirmed_send_returns_the_first_text_and_announces_it_again(
    world: ChatWorld,
) -> None:
    """The first send's server may have died after storing but before its event left it."""
    conversation = await world.direct("alice", "bob")
    first = await world.messaging.send("alice", conversation, "the original", "req-1")
    world.clock.advance(30)
    retried = await world.messaging.send("alice", conversation, "edited in between", "req-1")
    assert retried == first
    assert _stored(world, conversation) == [(1, "the original")]
    assert _delivered(world) == [(1, "the original"), (1, "the original")]


async def test_a_retry_while_the_database_is_down_is_answered_from_the_outbox(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    world.sql_down()
    first = await world.messaging.send("alice", conversation, "queued", "req-1")
    retried = await world.messaging.send("alice", conversation, "queued, edited", "req-1")
    assert retried == first
    assert [m.text for _, m in world.events.messages] == ["queued", "queued"]
    world.sql_back()
    assert _stored(world, conversation) == [(1, "queued")]


async def test_a_failed_durable_write_is_not_acknowledged_and_its_retry_stores_it(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    world.writes.down = True  # neither the database nor the outbox takes it
    with pytest.raises(Unavailable):
        await world.messaging.send("alice", conversation, "hello", "req-1")
    assert world.events.messages == [] and world.state.confirms == []
    world.writes.down = False
    sent = await world.messaging.send("alice", conversation, "hello", "req-1")
    assert sent.message_id == 1  # the id the failed attempt had been given
    assert _stored(world, conversation) == [(1, "hello")]
    assert _delivered(world) == [(1, "hello")]


async def test_redis_failing_after_the_write_still_acknowledges_and_delivers(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    world.state.failing = {"confirm_many"}
    sent = await world.messaging.send("alice", conversation, "stored all the same", "req-1")
    assert _stored(world, conversation) == [(1, "stored all the same")]
    assert _delivered(world) == [(1, "stored all the same")]
    assert sent.message_id == 1
    world.state.failing = set()
    assert (await world.view("bob", conversation)).unread_count == 1  # counted in SQL


async def test_a_lost_sequence_continues_after_the_newest_stored_id(world: ChatWorld) -> None:
    conversation = await world.direct("alice", "bob")
    for i in range(3):
        await world.send("alice", conversation, f"before {i}")
    world.state.sequences.clear()  # Redis lost the sequence, members still cached
    assert await world.send("bob", conversation, "after") == 4
    assert [i for i, _ in _stored(world, conversation)] == [1, 2, 3, 4]


async def test_a_lost_sequence_with_the_database_down_refuses_the_send_cleanly(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    await world.send("alice", conversation, "stored")
    world.state.sequences.clear()
    world.sql_down()
    batches = len(world.writes.batches)
    with pytest.raises(Unavailable) as refused:
        await world.messaging.send("alice", conversation, "not now", "req-x")
    assert "database is unavailable" in refused.value.message
    assert refused.value.metadata == {"backend": SQL}
    assert refused.value.retry_after is not None
    assert len(world.writes.batches) == batches and len(world.events.messages) == 1
    assert world.state.sequences == {}  # no id was handed out

    world.sql_back()
    sent = await world.messaging.send("alice", conversation, "not now", "req-x")
    assert sent.message_id == 2


async def test_a_loaded_conversation_knows_its_sequence_so_sends_survive_the_database(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    for i in range(3):
        await world.send("alice", conversation, f"before {i}")
    world.state.restart()  # Redis restarted empty ...
    await world.view("bob", conversation)  # ... and the conversation was loaded since
    assert world.state.sequences[conversation] == 3
    world.sql_down()
    assert await world.send("alice", conversation, "during") == 4
    world.sql_back()
    assert [i for i, _ in _stored(world, conversation)] == [1, 2, 3, 4]


async def test_a_new_conversation_takes_sends_while_the_database_is_down(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    group = await world.group("alice", "carol")
    world.sql_down()
    assert await world.send("alice", conversation, "first") == 1
    assert await world.send("carol", group, "first too") == 1
    assert _delivered(world) == [(1, "first"), (1, "first too")]
    world.sql_back()
    assert _stored(world, conversation) == [(1, "first")]


@pytest.mark.xfail(
    strict=True,
    reason="known limitation: idempotency records live only in Redis; after a Redis "
    "restart a retried send gets a new id that the database never stores",
)
async def test_a_retry_after_redis_forgot_the_request_returns_the_stored_message(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    first = await world.messaging.send("alice", conversation, "once", "req-1")
    world.state.restart()  # the reply was lost; Redis restarted before the client retried
    retried = await world.messaging.send("alice", conversation, "once", "req-1")
    assert retried.message_id == first.message_id
    assert len(world.events.messages) == 1


async def test_sends_are_refused_for_bad_input_strangers_and_unknown_conversations(
    world: ChatWorld,
) -> None:
    conversation = await world.direct("alice", "bob")
    with pytest.raises(InvalidArgument) as no_request_id:
        await world.messaging.send("alice", conversation, "hi", "")
    assert no_request_id.value.violations[0].field == "request_id"
    with pytest.raises(InvalidArgument):
        await world.messaging.send("alice", conversation, "", "r1")
    with pytest.raises(PermissionDenied) as stranger:
        await world.messaging.send("dave", conversation, "hi", "r2")
    assert stranger.value.reason == "NOT_A_MEMBER"
    with pytest.raises(NotFound):
        await world.messaging.send("alice", "no-such-conversation", "hi", "r3")
    assert world.writes.batches == [] and world.state.requests == {}


# -- read markers --------------------------------------------------------------------------------


async def _five_from_bob(world: ChatWorld) -> str:
    conversation = await world.direct("alice", "bob")
    for i in range(5):
        await world.send("bob", conversation, f"m{i}")
    return conversation


def _markers(world: ChatWorld) -> list[ReadMarker]:
    return [r for r in world.writes.records if isinstance(r, ReadMarker)]


async def test_mark_read_moves_the_marker_and_sends_a_receipt(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    assert await world.messaging.mark_read("alice", conversation, 3) == 2
    assert world.tables.markers[(conversation, "alice")] == 3
    ((users, receipt),) = world.events.receipts
    assert users == ("alice", "bob")
    assert (receipt.user_id, receipt.read_message_id) == ("alice", 3)
    assert (await world.view("alice", conversation)).unread_count == 2


async def test_a_backward_marker_is_not_written_and_sends_no_receipt(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    await world.messaging.mark_read("alice", conversation, 4)
    written = len(world.writes.batches)
    # unread is counted from the marker that stays, not from the older one sent
    assert await world.messaging.mark_read("alice", conversation, 2) == 1
    assert await world.messaging.mark_read("alice", conversation, 4) == 1  # same: no move
    assert len(world.writes.batches) == written
    assert [r.read_message_id for _u, r in world.events.receipts] == [4]
    assert world.tables.markers[(conversation, "alice")] == 4


async def test_the_counter_after_a_read_keeps_counting_new_messages(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    await world.messaging.mark_read("alice", conversation, 5)
    await world.send("bob", conversation, "one more")
    assert world.state.counters[(conversation, "alice")] == 1
    assert (await world.view("alice", conversation)).unread_count == 1


async def test_mark_read_with_the_database_down_queues_the_marker(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    world.sql_down()
    assert await world.messaging.mark_read("alice", conversation, 3) == 0
    assert [m.read_message_id for m in _markers(world)] == [3]
    assert world.writes.queued == _markers(world)
    assert [r.read_message_id for _u, r in world.events.receipts] == [3]
    world.sql_back()
    assert world.tables.markers[(conversation, "alice")] == 3


async def test_unread_after_a_read_during_a_database_outage_is_recounted(
    world: ChatWorld,
) -> None:
    """BUG: mark_read caches 0 in Redis when it could not count, so the conversation shows
    no unread messages long after the database is back (until the next read)."""
    conversation = await _five_from_bob(world)
    assert (await world.view("alice", conversation)).unread_count == 5
    world.sql_down()
    await world.messaging.mark_read("alice", conversation, 2)
    world.sql_back()
    assert (await world.view("alice", conversation)).unread_count == 3


@pytest.mark.parametrize("beyond", [1000, 2**63, 2**64 - 1])  # the wire field is a uint64
async def test_a_marker_past_the_newest_message_hides_no_later_message(
    world: ChatWorld, beyond: int
) -> None:
    """BUG: mark_read takes any positive id. A marker past the newest message makes the
    messages sent later count as read, and the receipt tells the others they were read.
    Past 2**63 - 1 no SQL BIGINT holds it: queued during an outage, it is the record the
    database refuses on every flush, and the outbox behind it never drains."""
    conversation = await _five_from_bob(world)
    try:
        await world.messaging.mark_read("alice", conversation, beyond)
    except InvalidArgument as refused:  # refusing is one way to fix it; clamping another
        assert refused.violations[0].field == "message_id"
    assert all(m.read_message_id <= 5 for m in _markers(world))
    assert all(r.read_message_id <= 5 for _u, r in world.events.receipts)
    world.state.counters.clear()  # counted in SQL, from the marker stored
    before = (await world.view("alice", conversation)).unread_count
    await world.send("bob", conversation, "sent after the read")
    world.state.counters.clear()
    assert (await world.view("alice", conversation)).unread_count == before + 1


async def test_mark_read_with_redis_down_still_counts(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    world.state.down = True
    assert await world.messaging.mark_read("alice", conversation, 1) == 4
    assert world.tables.markers[(conversation, "alice")] == 1


async def test_mark_read_refuses_bad_ids_and_strangers(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    for bad in (0, -1):
        with pytest.raises(InvalidArgument) as refused:
            await world.messaging.mark_read("alice", conversation, bad)
        assert refused.value.violations[0].field == "message_id"
    with pytest.raises(PermissionDenied):
        await world.messaging.mark_read("dave", conversation, 1)
    assert _markers(world) == []


# -- typing --------------------------------------------------------------------------------------


async def test_typing_is_told_to_the_others_with_its_expiry(world: ChatWorld) -> None:
    group = await world.group("alice", "bob", "carol")
    await world.messaging.set_typing("carol", group, True)
    ((users, notice),) = world.events.typing_notices
    assert users == ("alice", "bob")  # not the typist
    assert (notice.user_id, notice.typing) == ("carol", True)
    assert notice.expires_at == world.clock.now + 6.0
    await world.messaging.set_typing("carol", group, False)
    users, stopped = world.events.typing_notices[-1]
    assert users == ("alice", "bob")
    assert (stopped.typing, stopped.expires_at) == (False, world.clock.now)


async def test_stopping_without_having_started_tells_nobody(world: ChatWorld) -> None:
    group = await world.group("alice", "bob")
    await world.messaging.set_typing("bob", group, False)
    await world.messaging.set_typing("bob", group, True)
    await world.messaging.set_typing("bob", group, False)
    await world.messaging.set_typing("bob", group, False)  # a second stop: nothing more
    assert [n.typing for _u, n in world.events.typing_notices] == [True, False]


async def test_strangers_cannot_type(world: ChatWorld) -> None:
    group = await world.group("alice", "bob")
    with pytest.raises(PermissionDenied):
        await world.messaging.set_typing("dave", group, True)
    assert world.events.typing_notices == [] and world.state.typists == set()


# -- history and search --------------------------------------------------------------------------


async def test_history_tokens_belong_to_one_conversation_and_direction(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    other = await world.direct("alice", "carol")
    page, token = await world.messaging.page("alice", conversation, True, 2, "")
    assert [m.message_id for m in page] == [5, 4] and token
    rest, _ = await world.messaging.page("alice", conversation, True, 2, token)
    assert [m.message_id for m in rest] == [3, 2]
    bad_tokens = [
        "garbage",
        token + "x",
        encode_page_token("messages", {"conversation": other, "backward": "True"}, (3,)),
        encode_page_token("search", {"conversation": conversation, "backward": "True"}, (3,)),
        encode_page_token("messages", {"conversation": conversation, "backward": "True"}, ("x",)),
        encode_page_token("messages", {"conversation": conversation, "backward": "True"}, (-1,)),
    ]
    for bad in bad_tokens:
        with pytest.raises(InvalidArgument) as refused:
            await world.messaging.page("alice", conversation, True, 2, bad)
        assert refused.value.violations[0].field == "page_token", bad
    with pytest.raises(InvalidArgument) as other_direction:
        await world.messaging.page("alice", conversation, False, 2, token)
    assert other_direction.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        await world.messaging.page("alice", conversation, True, -1, "")
    with pytest.raises(PermissionDenied):
        await world.messaging.page("carol", conversation, True, 2, "")


async def test_history_is_unavailable_while_the_database_is_down(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    world.sql_down()
    with pytest.raises(Unavailable) as down:
        await world.messaging.page("alice", conversation, False, 0, "")
    assert down.value.metadata["backend"] == SQL


async def test_search_pages_through_equal_times_without_gaps(world: ChatWorld) -> None:
    one = await world.direct("alice", "bob")
    two = await world.direct("alice", "carol")
    world.clock.now = 0.1 + 0.2  # not a "round" float: the cursor must keep it exactly
    for conversation, sender in ((one, "bob"), (two, "carol"), (one, "alice"), (two, "alice")):
        await world.messaging.send(sender, conversation, "Report", f"r-{sender}-{conversation}")
    seen: list[tuple[str, int]] = []
    token = ""
    while True:
        page, token = await world.messaging.search("alice", "report", "", 1, token)
        seen.extend((m.conversation_id, m.message_id) for m in page)
        if not token:
            break
    assert sorted(seen) == sorted([(one, 1), (one, 2), (two, 1), (two, 2)])
    assert len(seen) == 4
    carol_sees, _ = await world.messaging.search("carol", "REPORT", "", 10, "")
    assert {m.conversation_id for m in carol_sees} == {two}


async def test_search_refuses_bad_queries_foreign_tokens_and_strangers(world: ChatWorld) -> None:
    conversation = await _five_from_bob(world)
    for query in ("", "   ", "nul\x00", "q" * 257):
        with pytest.raises(InvalidArgument) as refused:
            await world.messaging.search("alice", query, "", 0, "")
        assert refused.value.violations[0].field == "query"
    _, token = await world.messaging.search("alice", "m", "", 1, "")
    assert token
    for user, query, where in (("bob", "m", ""), ("alice", "m0", ""), ("alice", "m", conversation)):
        with pytest.raises(InvalidArgument) as foreign:
            await world.messaging.search(user, query, where, 1, token)
        assert foreign.value.violations[0].field == "page_token"
    with pytest.raises(PermissionDenied):
        await world.messaging.search("carol", "m", conversation, 0, "")
    found, _ = await world.messaging.search("alice", "M3", conversation, 0, "")
    assert [m.text for m in found] == ["m3"]
