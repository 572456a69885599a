"""Chat between users homed on two UCServers: delivery, order, receipts, typing, unread
counts, idempotent retries, history paging and search — over gRPC, with real Redis and SQL."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import redis.asyncio as aioredis

from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from tests.helpers.streams import EventStream
from tests.helpers.topology import error_info, login
from tests.integration.chat.conftest import User


async def _direct(a: User, b: User) -> chat_pb2.Conversation:
    reply = await a.chat.CreateConversation(
        chat_pb.CreateConversationRequest(
            kind=chat_pb2.CONVERSATION_KIND_DIRECT, member_user_ids=[b.user_id]
        ),
        metadata=a.metadata,
    )
    return reply.conversation


async def _group(owner: User, title: str, *others: User) -> chat_pb2.Conversation:
    reply = await owner.chat.CreateConversation(
        chat_pb.CreateConversationRequest(
            kind=chat_pb2.CONVERSATION_KIND_GROUP,
            title=title,
            member_user_ids=[o.user_id for o in others],
            request_id=uuid.uuid4().hex,
        ),
        metadata=owner.metadata,
    )
    return reply.conversation


async def _send(
    user: User, conversation_id: str, text: str, request_id: str = ""
) -> chat_pb2.Message:
    reply = await user.chat.SendMessage(
        chat_pb.SendMessageRequest(
            conversation_id=conversation_id, text=text, request_id=request_id or uuid.uuid4().hex
        ),
        metadata=user.metadata,
    )
    return reply.message


async def _stream(user: User) -> EventStream:
    stream = EventStream(user.address, user.token)
    await stream.open()
    return stream


async def _messages(stream: EventStream, count: int) -> list[chat_pb2.Message]:
    return [(await stream.next_of("message_created")).message_created.message for _ in range(count)]


async def _unread(user: User, conversation_id: str) -> int:
    reply = await user.chat.GetConversation(
        chat_pb.GetConversationRequest(conversation_id=conversation_id), metadata=user.metadata
    )
    return reply.conversation.unread_count


async def test_direct_chat_reaches_the_other_server_in_order(users: dict[str, User]) -> None:
    alice, bob = users["alice"], users["bob"]
    alice_stream, bob_stream = await _stream(alice), await _stream(bob)
    # alice's second client (another session of hers, on her home server)
    alice_phone = EventStream(alice.address, (await login(alice.address, "alice")).session_token)
    await alice_phone.open()
    try:
        conversation = await _direct(alice, bob)
        again = await _direct(bob, alice)  # the pair has one 1:1 conversation
        assert again.conversation_id == conversation.conversation_id
        sent = [await _send(alice, conversation.conversation_id, f"hello {i}") for i in range(20)]
        assert [m.message_id for m in sent] == list(range(1, 21))
        received = await _messages(bob_stream, 20)
        assert [(m.message_id, m.text) for m in received] == [(m.message_id, m.text) for m in sent]
        mine = await _messages(alice_phone, 20)  # the sender's other clients see them too
        assert [m.message_id for m in mine] == list(range(1, 21))
        # the sending client has each message in its reply: no event repeats it
        assert alice_stream.drain("message_created") == []
        # also when it sends through the other server (bob's home): the peer leaves it out
        elsewhere = User("alice", alice.user_id, bob.address, alice.token)
        try:
            via_peer = await _send(elsewhere, conversation.conversation_id, "via uc-2")
        finally:
            await elsewhere.channel.close()
        assert (await _messages(alice_phone, 1))[0].message_id == via_peer.message_id == 21
        assert (await _messages(bob_stream, 1))[0].message_id == 21
        assert alice_stream.drain("message_created") == []
        assert await _unread(bob, conversation.conversation_id) == 21
        assert await _unread(alice, conversation.conversation_id) == 0  # own messages

        reply = await bob.chat.MarkRead(
            chat_pb.MarkReadRequest(conversation_id=conversation.conversation_id, message_id=15),
            metadata=bob.metadata,
        )
        assert reply.unread_count == 6
        receipt = (await alice_stream.next_of("read_receipt")).read_receipt
        assert (receipt.user_id, receipt.read_message_id) == (bob.user_id, 15)
        await bob.chat.MarkRead(  # a marker never moves back
            chat_pb.MarkReadRequest(conversation_id=conversation.conversation_id, message_id=3),
            metadata=bob.metadata,
        )
        listed = await bob.chat.ListConversations(
            chat_pb.ListConversationsRequest(), metadata=bob.metadata
        )
        (view,) = listed.conversations
        assert (view.read_message_id, view.unread_count, view.last_message_id) == (15, 6, 21)
    finally:
        await alice_stream.close()
        await alice_phone.close()
        await bob_stream.close()


async def test_group_chat_with_typing_and_membership(users: dict[str, User]) -> None:
    alice, bob, carol, dave = users["alice"], users["bob"], users["carol"], users["dave"]
    streams = {name: await _stream(users[name]) for name in ("alice", "bob", "carol", "dave")}
    try:
        group = await _group(alice, "Team ☕", bob, carol)
        for name in ("bob", "carol"):
            changed = (await streams[name].next_of("conversation_changed")).conversation_changed
            assert changed.conversation.title == "Team ☕" and not changed.removed
        # interleaved senders on both servers: everyone sees the conversation's order
        for i in range(5):
            await _send(bob, group.conversation_id, f"bob {i}")
            await _send(carol, group.conversation_id, f"carol {i}")
        got = await _messages(streams["alice"], 10)
        assert [m.message_id for m in got] == list(range(1, 11))
        assert [m.text for m in got][:2] == ["bob 0", "carol 0"]
        for name, other in (("bob", "carol"), ("carol", "bob")):  # the others' messages
            got = await _messages(streams[name], 5)
            assert [m.message_id for m in got] == list(range(1, 11))[name == "bob" :: 2]
            assert [m.text for m in got] == [f"{other} {i}" for i in range(5)]
        assert streams["dave"].drain("message_created") == []

        await carol.chat.SetTyping(
            chat_pb.SetTypingRequest(conversation_id=group.conversation_id, typing=True),
            metadata=carol.metadata,
        )
        for name in ("alice", "bob"):
            typing = (await streams[name].next_of("typing_changed")).typing_changed
            assert (typing.user_id, typing.typing) == (carol.user_id, True)
            assert typing.expire_time.seconds > 0
        await carol.chat.SetTyping(
            chat_pb.SetTypingRequest(conversation_id=group.conversation_id, typing=False),
            metadata=carol.metadata,
        )
        stopped = (await streams["bob"].next_of("typing_changed")).typing_changed
        assert stopped.typing is False
        assert streams["carol"].drain("typing_changed") == []  # not echoed to the typist

        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await _send(dave, group.conversation_id, "let me in")
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(denied.value).reason == "NOT_A_MEMBER"

        await alice.chat.AddMembers(
            chat_pb.AddMembersRequest(
                conversation_id=group.conversation_id, user_ids=[dave.user_id]
            ),
            metadata=alice.metadata,
        )
        await streams["dave"].next_of("conversation_changed")
        assert await _unread(dave, group.conversation_id) == 0  # earlier history counts as read
        await _send(dave, group.conversation_id, "thanks")
        assert (await _messages(streams["bob"], 1))[0].text == "thanks"

        await bob.chat.LeaveConversation(
            chat_pb.LeaveConversationRequest(conversation_id=group.conversation_id),
            metadata=bob.metadata,
        )
        while True:
            left = (await streams["bob"].next_of("conversation_changed")).conversation_changed
            if left.removed:
                break
        assert bob.user_id not in left.conversation.member_user_ids
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await bob.chat.ListMessages(
                chat_pb.ListMessagesRequest(conversation_id=group.conversation_id),
                metadata=bob.metadata,
            )
        assert gone.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        for stream in streams.values():
            await stream.close()


async def test_a_retried_send_stores_one_message(users: dict[str, User]) -> None:
    alice, bob = users["alice"], users["bob"]
    conversation = await _direct(alice, bob)
    first = await _send(alice, conversation.conversation_id, "once", request_id="req-1")
    retried = await _send(alice, conversation.conversation_id, "once", request_id="req-1")
    assert (retried.message_id, retried.create_time) == (first.message_id, first.create_time)
    other = await _send(alice, conversation.conversation_id, "twice", request_id="req-2")
    assert other.message_id == first.message_id + 1
    page = await bob.chat.ListMessages(
        chat_pb.ListMessagesRequest(conversation_id=conversation.conversation_id),
        metadata=bob.metadata,
    )
    assert [m.text for m in page.messages] == ["twice", "once"]


async def test_history_pages_both_ways_without_gaps(users: dict[str, User]) -> None:
    alice, bob = users["alice"], users["bob"]
    conversation = await _direct(alice, bob)
    await asyncio.gather(*(_send(alice, conversation.conversation_id, f"m{i}") for i in range(120)))
    for direction, expected in (
        (chat_pb.LIST_DIRECTION_BACKWARD, list(range(120, 0, -1))),
        (chat_pb.LIST_DIRECTION_FORWARD, list(range(1, 121))),
    ):
        seen: list[int] = []
        token = ""
        pages = 0
        while True:
            page = await bob.chat.ListMessages(
                chat_pb.ListMessagesRequest(
                    conversation_id=conversation.conversation_id,
                    direction=direction,
                    page_size=50,
                    page_token=token,
                ),
                metadata=bob.metadata,
            )
            seen.extend(m.message_id for m in page.messages)
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert seen == expected and pages == 3
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await bob.chat.ListMessages(
            chat_pb.ListMessagesRequest(
                conversation_id=conversation.conversation_id, page_token="x"
            ),
            metadata=bob.metadata,
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_input_is_refused_and_any_text_survives(users: dict[str, User]) -> None:
    alice, bob, dave = users["alice"], users["bob"], users["dave"]
    conversation = await _direct(alice, bob)
    cases = [
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("x" * (16 * 1024 + 1), grpc.StatusCode.INVALID_ARGUMENT),
        ("nul \x00 inside", grpc.StatusCode.INVALID_ARGUMENT),  # no SQL database keeps it
    ]
    for text, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _send(alice, conversation.conversation_id, text)
        assert refused.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await _send(alice, "no-such-conversation", "hi")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as stranger:
        await _send(dave, conversation.conversation_id, "hi")
    assert stranger.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as nobody:
        await alice.chat.CreateConversation(
            chat_pb.CreateConversationRequest(
                kind=chat_pb2.CONVERSATION_KIND_DIRECT, member_user_ids=["no-such-user"]
            ),
            metadata=alice.metadata,
        )
    assert nobody.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await alice.chat.SendMessage(
            chat_pb.SendMessageRequest(conversation_id=conversation.conversation_id, text="x")
        )
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

    tricky = "tab\there\r\nbell\a esc\x1b[31m zwj👩‍💻 rtl\u202eabc 𝄞 ü\u0301 \ufeff" + "é" * 8000
    assert len(tricky.encode()) <= 16 * 1024
    sent = await _send(alice, conversation.conversation_id, tricky)
    page = await bob.chat.ListMessages(
        chat_pb.ListMessagesRequest(conversation_id=conversation.conversation_id, page_size=1),
        metadata=bob.metadata,
    )
    assert page.messages[0].text == tricky == sent.text


async def test_search_finds_only_the_callers_messages(users: dict[str, User]) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    ab = await _direct(alice, bob)
    bc = await _direct(bob, carol)
    await _send(alice, ab.conversation_id, "The Quarterly report is ready")
    await _send(bob, ab.conversation_id, "100% done_now")
    await _send(bob, bc.conversation_id, "report for carol only")
    found = await alice.chat.SearchMessages(
        chat_pb.SearchMessagesRequest(query="REPORT"), metadata=alice.metadata
    )
    assert [m.text for m in found.messages] == ["The Quarterly report is ready"]
    literal = await alice.chat.SearchMessages(
        chat_pb.SearchMessagesRequest(query="0% d"), metadata=alice.metadata
    )
    assert [m.text for m in literal.messages] == ["100% done_now"]
    nothing = await alice.chat.SearchMessages(
        chat_pb.SearchMessagesRequest(query="_"), metadata=alice.metadata
    )
    assert [m.text for m in nothing.messages] == ["100% done_now"]
    both = await bob.chat.SearchMessages(
        chat_pb.SearchMessagesRequest(query="report", page_size=1), metadata=bob.metadata
    )
    assert [m.text for m in both.messages] == ["report for carol only"]
    rest = await bob.chat.SearchMessages(
        chat_pb.SearchMessagesRequest(query="report", page_size=1, page_token=both.next_page_token),
        metadata=bob.metadata,
    )
    assert [m.text for m in rest.messages] == ["The Quarterly report is ready"]


async def test_counters_and_ids_survive_a_redis_restart(
    users: dict[str, User], redis_url: str
) -> None:
    alice, bob = users["alice"], users["bob"]
    conversation = await _direct(alice, bob)
    for i in range(3):
        await _send(alice, conversation.conversation_id, f"before {i}")
    client = aioredis.from_url(redis_url)
    try:
        await client.flushall()  # what a Redis restart without persistence leaves
    finally:
        await client.aclose()
    assert await _unread(bob, conversation.conversation_id) == 3  # rebuilt from SQL
    after = await _send(alice, conversation.conversation_id, "after")
    assert after.message_id == 4  # the sequence continues after the newest stored id
    assert await _unread(bob, conversation.conversation_id) == 4
