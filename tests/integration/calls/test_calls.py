"""Calls across UCServers through a MediaServer, with real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.journal.v1 import journal_pb2
from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.app import ServerApp
from tests.helpers.calls import ALICE_HZ, BOB_HZ, Phone, hear_each_other
from tests.helpers.media import LoopbackPeer
from tests.helpers.topology import System, error_info, wait_for

RINGING = call_pb2.CALL_STATE_RINGING
CONNECTED = call_pb2.CALL_STATE_CONNECTED
ENDED = call_pb2.CALL_STATE_ENDED

pytestmark = pytest.mark.usefixtures("media_servers")


async def _failure(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code(), error_info(failure.value).reason


async def _journal(phone: Phone) -> list[journal_pb2.JournalEntry]:
    reply = await phone.journal.ListJournalEntries(
        journal_pb.ListJournalEntriesRequest(), metadata=phone.metadata
    )
    return list(reply.entries)


async def _telephony(watcher: Phone, user_id: str, wanted: int) -> None:
    """Wait until ``watcher``'s stream reports ``user_id`` with telephony ``wanted``."""
    while True:
        presence = await watcher.events.presence_of(user_id, timeout=5)
        if presence.telephony_state == wanted:
            return


async def test_alice_calls_bob_across_servers_and_they_hear_each_other(
    system: System, phones: Any, media_servers: dict[str, ServerApp]
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    carol, dave = await phones("carol"), await phones("dave")  # watchers on each UCServer
    await carol.presence.AddContacts(
        presence_pb.AddContactsRequest(user_ids=[bob.user_id]), metadata=carol.metadata
    )
    await dave.presence.AddContacts(
        presence_pb.AddContactsRequest(user_ids=[alice.user_id]), metadata=dave.metadata
    )
    placed = await alice.place(bob, request_id="first-call")
    assert state_of(placed) == "CALL_STATE_RINGING"
    assert placed.media_server_id in media_servers
    # a retried PlaceCall returns the same call (here by the name a person types)
    again = await alice.calls.PlaceCall(
        call_pb.PlaceCallRequest(callee_username="bob", request_id="first-call"),
        metadata=alice.metadata,
    )
    assert again.call.call_id == placed.call_id

    ringing = await bob.call_event(placed.call_id, RINGING)
    assert ringing.caller_user_id == alice.user_id
    await _telephony(carol, bob.user_id, presence_pb2.TELEPHONY_STATE_RINGING)

    alice_peer, bob_peer = LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ)
    try:
        # the caller negotiates while it rings, the callee once it answered
        assert await alice.negotiate(placed.call_id, alice_peer) == placed.media_server_id
        answered = await bob.calls.AnswerCall(
            call_pb.AnswerCallRequest(call_id=placed.call_id), metadata=bob.metadata
        )
        assert answered.call.answered_by_user_id == bob.user_id
        assert answered.call.answered_session_id == bob.session_id
        assert await bob.negotiate(placed.call_id, bob_peer) == placed.media_server_id
        await alice.call_event(placed.call_id, CONNECTED)

        await hear_each_other(alice_peer, bob_peer)

        async def legs_reported() -> bool:  # the MediaServer's heartbeat carries its legs
            async with system.operator_channel(system.lookup) as channel:
                reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
                    lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_MEDIA)
                )
            return {s.server_id: s.legs for s in reply.servers}[placed.media_server_id] == 2

        await wait_for(legs_reported)

        # "on the phone" for watchers on both servers
        await _telephony(carol, bob.user_id, presence_pb2.TELEPHONY_STATE_ON_THE_PHONE)
        await _telephony(dave, alice.user_id, presence_pb2.TELEPHONY_STATE_ON_THE_PHONE)
        active = await alice.calls.ListActiveCalls(
            call_pb.ListActiveCallsRequest(), metadata=alice.metadata
        )
        assert [c.call_id for c in active.calls] == [placed.call_id]

        await asyncio.sleep(0.5)
        ended = await alice.calls.HangUp(
            call_pb.HangUpRequest(call_id=placed.call_id), metadata=alice.metadata
        )
        assert ended.call.end_reason == call_pb2.END_REASON_HANGUP
        assert (await bob.call_event(placed.call_id, ENDED)).end_reason == (
            call_pb2.END_REASON_HANGUP
        )
        await _telephony(carol, bob.user_id, presence_pb2.TELEPHONY_STATE_IDLE)
        await _telephony(dave, alice.user_id, presence_pb2.TELEPHONY_STATE_IDLE)
    finally:
        await alice_peer.close()
        await bob_peer.close()

    async def journals_written() -> bool:
        return bool(await _journal(alice)) and bool(await _journal(bob))

    await wait_for(journals_written)
    (placed_entry,) = await _journal(alice)
    (received_entry,) = await _journal(bob)
    assert placed_entry.kind == journal_pb2.JOURNAL_ENTRY_KIND_CALL_PLACED
    assert received_entry.kind == journal_pb2.JOURNAL_ENTRY_KIND_CALL_RECEIVED
    for entry in (placed_entry, received_entry):
        assert entry.call_id == placed.call_id
        assert entry.duration.ToMilliseconds() >= 500
    assert placed_entry.peer_user_id == bob.user_id
    assert received_entry.peer_user_id == alice.user_id
    # the bridge is gone and the call is no longer active
    none = await bob.calls.ListActiveCalls(call_pb.ListActiveCallsRequest(), metadata=bob.metadata)
    assert not none.calls


def state_of(call: call_pb2.Call) -> str:
    """The call's state name."""
    return call_pb2.CallState.Name(call.state)
