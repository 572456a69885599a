"""A 1:1 video call placed through the CallService: VP8 forwarded by the MediaServer."""

from __future__ import annotations

import time
from typing import Any

import pytest

from procall.api.call.v1 import call_service_pb2 as call_pb
from tests.helpers.calls import Phone
from tests.helpers.video import VideoPeer, VideoRecorder

pytestmark = [pytest.mark.usefixtures("media_servers"), pytest.mark.timeout(60)]

ALICE_HZ, BOB_HZ = 440.0, 880.0
ALICE_COLOUR = (90, 100, 200)
BOB_COLOUR = (110, 200, 90)
#: Generous: the machine is shared; without a keyframe on join a new peer never decodes.
FIRST_FRAMES_SECONDS = 8.0


def _alices(recorder: VideoRecorder, since: int = 0) -> None:
    colours = recorder.colours[since:]
    assert colours
    for decoded in colours:
        assert all(abs(a - b) <= 12 for a, b in zip(decoded, ALICE_COLOUR, strict=True))


async def test_bob_sees_alice_and_again_after_negotiating_anew(phones: Any) -> None:
    alice, bob = await phones("alice"), await phones("bob")
    reply = await alice.calls.PlaceCall(
        call_pb.PlaceCallRequest(callee_user_id=bob.user_id, video=True),
        metadata=alice.metadata,
    )
    call_id = reply.call.call_id
    assert reply.call.video
    await bob.calls.AnswerCall(call_pb.AnswerCallRequest(call_id=call_id), metadata=bob.metadata)
    alice_peer = VideoPeer(ALICE_HZ, ALICE_COLOUR, mute="until_decoding")
    bob_peer = VideoPeer(BOB_HZ, BOB_COLOUR, mute="until_decoding")
    peers: list[VideoPeer] = [alice_peer, bob_peer]
    try:
        await _negotiate_both(alice, bob, call_id, alice_peer, bob_peer)
        _alices(await bob_peer.frames_seen(15, FIRST_FRAMES_SECONDS))

        # bob's client restarts its peer connection: it negotiates again in the same call,
        # and decodes alice again only because the bridge asks her for a keyframe
        new_bob = VideoPeer(BOB_HZ, BOB_COLOUR, mute="until_decoding")
        peers.append(new_bob)
        started = time.monotonic()
        await bob.negotiate(call_id, new_bob)
        seen = await new_bob.frames_seen(10, FIRST_FRAMES_SECONDS)
        assert seen.first_frame_at is not None
        print(f"renegotiated: first decoded frame {seen.first_frame_at - started:.3f} s after")
        _alices(seen)
    finally:
        for peer in peers:
            await peer.close()


async def _negotiate_both(
    alice: Phone, bob: Phone, call_id: str, alice_peer: VideoPeer, bob_peer: VideoPeer
) -> None:
    await alice.negotiate(call_id, alice_peer)
    await bob.negotiate(call_id, bob_peer)
