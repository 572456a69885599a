"""1:1 video through a real Bridge: aiortc peers on 127.0.0.1, VP8 forwarded without a decode.

Alice and Bob each send a VP8 test pattern in their own colour (and a tone); each must decode
the other's frames, in the other's colour, with the bar moving. The senders make keyframes only
when a PLI/FIR reaches them, and the receivers send no PLI of their own before they decode
their first frame: a receiver that joins late (Bob negotiating again) starts decoding only
because the bridge asks the publisher for a keyframe when it joins, and a PLI from a far end
reaches the publisher only because the bridge passes it on (rate-limited).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCRtpReceiver

from procall.media import LOOPBACK, Bridge, MediaConfig
from tests.helpers.video import VideoPeer, VideoRecorder

pytestmark = pytest.mark.timeout(40)

ALICE_HZ, BOB_HZ = 440.0, 880.0
#: (Y, U, V) of each pattern: reddish for Alice, bluish for Bob.
ALICE_COLOUR = (90, 100, 200)
BOB_COLOUR = (110, 200, 90)
#: How long a (re)joining receiver may take to decode its first frames (generous: the machine
#: is shared; without a keyframe it never decodes at all).
FIRST_FRAMES_SECONDS = 8.0


async def _connect(bridge: Bridge, name: str, peer: VideoPeer) -> None:
    await peer.accept(await bridge.answer(name, await peer.offer()))


def _check_content(recorder: VideoRecorder, colour: tuple[int, int, int], since: int = 0) -> None:
    """The decoded frames are the sender's: its colour, and its bar moving."""
    colours = recorder.colours[since:]
    assert colours
    for decoded in colours:
        assert all(abs(a - b) <= 12 for a, b in zip(decoded, colour, strict=True)), (
            decoded,
            colour,
        )
    bars = {bar for bar in recorder.bars[since:] if bar is not None}
    assert len(bars) >= len(colours) // 2, bars


async def _closed(*closables: Bridge | VideoPeer) -> None:
    for closable in closables:
        await closable.close()


@pytest.fixture
async def call() -> AsyncIterator[tuple[Bridge, VideoPeer, VideoPeer]]:
    bridge = Bridge(("alice", "bob"), MediaConfig(host_addresses=LOOPBACK))
    alice = VideoPeer(ALICE_HZ, ALICE_COLOUR, mute="until_decoding")
    bob = VideoPeer(BOB_HZ, BOB_COLOUR, mute="until_decoding")
    await asyncio.gather(_connect(bridge, "alice", alice), _connect(bridge, "bob", bob))
    yield bridge, alice, bob
    await _closed(bridge, alice, bob)


async def test_each_side_sees_the_other_through_the_bridge(
    call: tuple[Bridge, VideoPeer, VideoPeer],
) -> None:
    bridge, alice, bob = call
    seen_by_bob, seen_by_alice = await asyncio.gather(
        bob.frames_seen(20, FIRST_FRAMES_SECONDS), alice.frames_seen(20, FIRST_FRAMES_SECONDS)
    )
    _check_content(seen_by_bob, ALICE_COLOUR)
    _check_content(seen_by_alice, BOB_COLOUR)
    for leg, peer in ((bridge.leg("alice"), alice), (bridge.leg("bob"), bob)):
        assert leg.has_video
        tap, audio = leg.video_tap, leg.tap
        assert tap is not None and audio is not None and peer.pattern is not None
        # Whole frames, not packets, crossed the bridge (a keyframe spans several packets),
        # and none was decoded there.
        assert peer.pattern.largest_frame > 2 * 1200
        assert 0 < tap.forwarded <= peer.pattern.frames_sent
        assert tap.refused == 0 and tap.frames_for_decoder == 0
        assert audio.forwarded > 0
        # The pattern makes a keyframe at its start and on request only.
        assert peer.pattern.keyframes_sent <= 1 + peer.pattern.keyframe_requests


async def test_a_renegotiating_receiver_gets_a_keyframe_and_decodes_again(
    call: tuple[Bridge, VideoPeer, VideoPeer],
) -> None:
    bridge, alice, bob = call
    await bob.frames_seen(10, FIRST_FRAMES_SECONDS)
    assert alice.pattern is not None
    requests_before = alice.pattern.keyframe_requests

    # Bob's client restarts its peer connection and negotiates again in the same bridge; the
    # new peer sends no PLI of its own, so only the bridge's request on join can help it.
    new_bob = VideoPeer(BOB_HZ, BOB_COLOUR, mute="until_decoding")
    try:
        bridge.add_leg("bob-2", replaces="bob")
        started = time.monotonic()
        await _connect(bridge, "bob-2", new_bob)
        assert bridge.leg("alice").connection_state == "connected"
        assert [leg.name for leg in bridge.legs] == ["alice", "bob-2"]
        seen = await new_bob.frames_seen(10, FIRST_FRAMES_SECONDS)
        assert seen.first_frame_at is not None
        print(f"new leg: first decoded video {seen.first_frame_at - started:.3f} s after offer")
        _check_content(seen, ALICE_COLOUR)
        assert alice.pattern.keyframe_requests > requests_before
        # The old leg is gone, the call is not; Alice now sees the new peer's video.
        assert not bridge.closed
        seen_by_alice = alice.recorder
        assert seen_by_alice is not None
        frames_before = seen_by_alice.frames
        await alice.frames_seen(frames_before + 10, FIRST_FRAMES_SECONDS)
        _check_content(seen_by_alice, BOB_COLOUR, since=frames_before + 1)
    finally:
        await new_bob.close()


async def test_a_keyframe_request_from_a_far_end_reaches_the_publisher_rate_limited(
    call: tuple[Bridge, VideoPeer, VideoPeer],
) -> None:
    bridge, alice, bob = call
    await bob.frames_seen(5, FIRST_FRAMES_SECONDS)
    assert alice.pattern is not None
    bob.mute = "always"  # from now on, only the test's PLIs leave Bob
    await asyncio.sleep(0.5)  # past the interval of the request made when Bob joined
    publisher = bridge.leg("alice")
    before, sent_before = alice.pattern.keyframe_requests, publisher.keyframe_requests_sent
    (source,) = bob.video.receiver.getSynchronizationSources()
    for _ in range(3):
        # Ten PLIs from Bob's receiver at once (aiortc's own method, past the test's mute).
        for _ in range(10):
            await RTCRtpReceiver._send_rtcp_pli(bob.video.receiver, source.source)
        await asyncio.sleep(1.0)
        if publisher.keyframe_requests_sent > sent_before:
            break  # else a stalled loaded machine let UDP drop the burst: send it again
    passed_on = alice.pattern.keyframe_requests - before
    sent = publisher.keyframe_requests_sent - sent_before
    # One at once, one deferred to the end of the 300 ms interval (one more if the ten took
    # longer than an interval to arrive on a loaded machine): never ten.
    assert 1 <= sent <= 3 and passed_on <= 3, (sent, passed_on)
