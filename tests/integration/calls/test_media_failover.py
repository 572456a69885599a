"""A MediaServer that goes away: its calls move to another one, or end MEDIA_FAILURE."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.servers.runtime.app import ServerApp
from tests.helpers.calls import ALICE_HZ, BOB_HZ, hear_each_other
from tests.helpers.media import LoopbackPeer


async def test_calls_move_to_the_other_media_server_then_fail_when_none_is_left(
    phones: Any, media_servers: dict[str, ServerApp]
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    placed = await alice.place(bob)
    await bob.calls.AnswerCall(
        call_pb.AnswerCallRequest(call_id=placed.call_id), metadata=bob.metadata
    )
    peers = [LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ)]
    try:
        await alice.negotiate(placed.call_id, peers[0])
        await bob.negotiate(placed.call_id, peers[1])
        await hear_each_other(*peers)
        first = placed.media_server_id

        stopped = time.monotonic()
        await media_servers[first].stop(0)
        for phone in (alice, bob):
            moved = await phone.moved(placed.call_id, first)
            assert moved.state == call_pb2.CALL_STATE_CONNECTED
            assert moved.media_server_id in media_servers and moved.media_server_id != first
        # both clients negotiate again with the new MediaServer and hear each other again
        for peer in peers:
            await peer.close()
        peers = [LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ)]
        await asyncio.gather(
            alice.negotiate(placed.call_id, peers[0]), bob.negotiate(placed.call_id, peers[1])
        )
        print(f"call moved and renegotiated {time.monotonic() - stopped:.2f} s after the stop")
        await hear_each_other(*peers)

        # the last MediaServer goes too: the call ends MEDIA_FAILURE within a few seconds
        await media_servers[moved.media_server_id].stop(0)
        for phone in (alice, bob):
            ended = await phone.moved(placed.call_id, moved.media_server_id)
            assert ended.state == call_pb2.CALL_STATE_ENDED
            assert ended.end_reason == call_pb2.END_REASON_MEDIA_FAILURE
    finally:
        for peer in peers:
            await peer.close()


async def test_a_party_whose_media_goes_away_ends_the_call(
    phones: Any, media_servers: dict[str, ServerApp]
) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    placed = await alice.place(bob)
    await bob.calls.AnswerCall(
        call_pb.AnswerCallRequest(call_id=placed.call_id), metadata=bob.metadata
    )
    alice_peer, bob_peer = LoopbackPeer(ALICE_HZ), LoopbackPeer(BOB_HZ)
    try:
        await alice.negotiate(placed.call_id, alice_peer)
        await bob.negotiate(placed.call_id, bob_peer)
        await hear_each_other(alice_peer, bob_peer)
        await alice_peer.close()  # alice's client goes away with its media, not its session
        for phone in (alice, bob):
            ended = await phone.moved(placed.call_id, placed.media_server_id, timeout=10)
            assert ended.state == call_pb2.CALL_STATE_ENDED
            assert ended.end_reason == call_pb2.END_REASON_FAILED
    finally:
        await alice_peer.close()
        await bob_peer.close()
