"""One user action is one trace across the mesh: a chat message and a presence change
from a user on uc-1 to one on uc-2, and a call set-up through the Lookup and a
MediaServer. Real servers in-process, real Redis and SQL; spans kept in memory."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from procall.api.call.v1 import call_pb2
from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.servers.runtime.app import ServerApp
from procall.telemetry.tracing import SERVER_ATTRIBUTE
from tests.helpers.calls import ALICE_HZ
from tests.helpers.media import LoopbackPeer
from tests.helpers.topology import wait_for

_SEND = "/procall.api.chat.v1.ChatService/SendMessage"
_SET_PRESENCE = "/procall.api.presence.v1.PresenceService/SetPresence"
_PLACE_CALL = "/procall.api.call.v1.CallService/PlaceCall"
_NEGOTIATE = "/procall.api.call.v1.CallService/NegotiateMedia"
_ALLOCATE = "/procall.mesh.lookup.v1.LookupService/AllocateMediaServer"
_CREATE_LEG = "/procall.mesh.media.v1.MediaService/CreateLeg"


def _server_span(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name and s.kind == SpanKind.SERVER]
    return span


def _trace(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _parent(spans: Sequence[ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    (parent,) = [
        s for s in spans if s.context is not None and s.context.span_id == span.parent.span_id
    ]
    return parent


async def _finished(spans: InMemorySpanExporter, name: str, server: str) -> list[ReadableSpan]:
    """The exported spans, once one named ``name`` was recorded on ``server``."""

    async def there() -> bool:
        return any(
            s.name == name and (s.attributes or {}).get(SERVER_ATTRIBUTE) == server
            for s in spans.get_finished_spans()
        )

    await wait_for(there)
    return list(spans.get_finished_spans())


def _assert_crosses_the_mesh(
    trace: list[ReadableSpan], root: ReadableSpan, recipient_session: str
) -> None:
    """``root`` (on uc-1) -> peer send (uc-1) -> peer receive (uc-2) -> the delivery to
    the recipient's stream (uc-2), each the parent of the next."""
    deliver = [
        s
        for s in trace
        if s.name == "session deliver"
        and (s.attributes or {}).get("procall.session_id") == recipient_session
        and _parent(trace, s).name == "peer receive"
    ]
    assert deliver, "no delivery from the peer in the trace"
    assert deliver[0].attributes[SERVER_ATTRIBUTE] == "uc-2"  # type: ignore[index]
    assert deliver[0].links  # to the recipient's Connect stream
    receive = _parent(trace, deliver[0])
    assert (receive.name, receive.kind) == ("peer receive", SpanKind.CONSUMER)
    assert receive.attributes[SERVER_ATTRIBUTE] == "uc-2"  # type: ignore[index]
    assert receive.links  # to the peer stream it came on
    send = _parent(trace, receive)
    assert (send.name, send.kind) == ("peer send", SpanKind.PRODUCER)
    assert send.attributes[SERVER_ATTRIBUTE] == "uc-1"  # type: ignore[index]
    # the send hangs off the RPC that caused it (directly or through procall's steps)
    ancestor = _parent(trace, send)
    while ancestor is not root:
        ancestor = _parent(trace, ancestor)


async def test_a_chat_message_across_servers_is_one_trace(
    spans: InMemorySpanExporter, phones: Any
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    chat = chat_grpc.ChatServiceStub(alice.channel)
    created = await chat.CreateConversation(
        chat_pb.CreateConversationRequest(
            kind=chat_pb2.CONVERSATION_KIND_DIRECT, member_user_ids=[bob.user_id]
        ),
        metadata=alice.metadata,
    )
    await chat.SendMessage(
        chat_pb.SendMessageRequest(
            conversation_id=created.conversation.conversation_id,
            text="hello bob",
            request_id=uuid.uuid4().hex,
        ),
        metadata=alice.metadata,
    )
    event = await bob.events.next_of("message_created")
    assert event.message_created.message.text == "hello bob"

    finished = await _finished(spans, "session deliver", "uc-2")
    send = _server_span(finished, _SEND)
    trace = _trace(finished, send.context.trace_id)  # type: ignore[union-attr]
    # the event bob's client got names the same trace
    assert f"{send.context.trace_id:032x}" in event.trace_context["traceparent"]  # type: ignore[union-attr]
    # the sender's Redis steps (the conversation's sequence) are in the trace, under
    # SendMessage, and so is the wait for the group commit that stored it in SQL
    redis = [s for s in trace if (s.attributes or {}).get("db.system") == "redis"]
    assert redis and all(_parent(trace, s) is send for s in redis)
    (store,) = [s for s in trace if s.name == "chat store"]
    assert _parent(trace, store) is send
    assert store.attributes[SERVER_ATTRIBUTE] == "uc-1"  # type: ignore[index]
    _assert_crosses_the_mesh(trace, send, bob.session_id)


async def test_a_presence_change_across_servers_is_one_trace(
    spans: InMemorySpanExporter, phones: Any
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    await bob.presence.AddContacts(
        presence_pb.AddContactsRequest(user_ids=[alice.user_id]), metadata=bob.metadata
    )
    spans.clear()
    await alice.presence.SetPresence(
        presence_pb.SetPresenceRequest(
            availability=presence_pb2.AVAILABILITY_BUSY, note="in a meeting"
        ),
        metadata=alice.metadata,
    )
    while (seen := await bob.events.presence_of(alice.user_id)).note != "in a meeting":
        pass
    assert seen.availability == presence_pb2.AVAILABILITY_BUSY

    finished = await _finished(spans, "session deliver", "uc-2")
    root = _server_span(finished, _SET_PRESENCE)
    trace = _trace(finished, root.context.trace_id)  # type: ignore[union-attr]
    # the Redis write of the change is in the trace
    assert any((s.attributes or {}).get("db.system") == "redis" for s in trace)
    _assert_crosses_the_mesh(trace, root, bob.session_id)


async def test_a_call_set_up_is_one_trace_through_lookup_and_media_server(
    spans: InMemorySpanExporter, phones: Any, media_servers: dict[str, ServerApp]
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    spans.clear()
    placed = await alice.place(bob)
    await bob.call_event(placed.call_id, call_pb2.CALL_STATE_RINGING)
    peer = LoopbackPeer(ALICE_HZ)
    try:
        # alice's media: her UCServer asks the call's MediaServer for a leg
        await alice.negotiate(placed.call_id, peer)
    finally:
        await peer.close()

    finished = await _finished(spans, "session deliver", "uc-2")
    place = _server_span(finished, _PLACE_CALL)
    trace = _trace(finished, place.context.trace_id)  # type: ignore[union-attr]
    # PlaceCall -> the Lookup's allocation of a MediaServer (client and server span)
    allocation = _server_span(trace, _ALLOCATE)
    assert _parent(trace, _parent(trace, allocation)).name == _PLACE_CALL
    # ... and the ringing reaches bob's stream on uc-2 in the same trace
    _assert_crosses_the_mesh(trace, place, bob.session_id)

    # alice's media negotiation joins the set-up's trace: the MediaServer's CreateLeg is
    # in it, under a "call media" span of uc-1 whose parent is PlaceCall, and linked to the
    # NegotiateMedia call that asked for it
    negotiate = _server_span(finished, _NEGOTIATE)
    create_leg = _server_span(trace, _CREATE_LEG)
    ancestor = _parent(trace, create_leg)
    while ancestor.name != "call media":
        ancestor = _parent(trace, ancestor)
    assert ancestor.attributes[SERVER_ATTRIBUTE] == "uc-1"  # type: ignore[index]
    assert _parent(trace, ancestor) is place
    assert [link.context.span_id for link in ancestor.links] == [
        negotiate.context.span_id  # type: ignore[union-attr]
    ]
