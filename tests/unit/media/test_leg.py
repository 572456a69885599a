"""A leg refuses what it cannot answer and ends cleanly without a call."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from procall.errors import FailedPrecondition, InvalidArgument
from procall.media import LOOPBACK, Bridge, ForwardedTrack, Leg, MediaConfig, host_addresses

CONFIG = MediaConfig(host_addresses=LOOPBACK)


async def _offer(*kinds: str) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        if kind == "data":
            pc.createDataChannel("chat")
        else:
            pc.addTransceiver(kind)
    with host_addresses(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    return pc, pc.localDescription.sdp


@pytest.mark.parametrize("kind", ["video", "data"])
async def test_an_offer_without_audio_is_refused(kind: str) -> None:
    peer, offer = await _offer(kind)
    leg = Leg("alice", CONFIG)
    try:
        with pytest.raises(InvalidArgument):
            await leg.answer(offer, outbound=ForwardedTrack())
        assert leg.ended
    finally:
        await peer.close()


async def test_the_answer_offers_only_opus_and_loopback() -> None:
    peer, offer = await _offer("audio")
    leg = Leg("alice", CONFIG)
    try:
        answer = await leg.answer(offer, outbound=ForwardedTrack())
        rtpmaps = [line for line in answer.splitlines() if line.startswith("a=rtpmap")]
        assert len(rtpmaps) == 1 and "opus/48000" in rtpmaps[0]
        candidates = [line for line in answer.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" 127.0.0.1 " in line for line in candidates)
        with pytest.raises(FailedPrecondition):
            await leg.answer(offer, outbound=ForwardedTrack())
    finally:
        await leg.close()
        await peer.close()
    assert leg.ended and leg.inbound.readyState == "ended"


async def test_a_bridge_closes_before_anyone_joined() -> None:
    bridge = Bridge(("alice", "bob"), CONFIG)
    await bridge.close()
    await bridge.close()
    assert bridge.closed and all(leg.ended for leg in bridge.legs)


def test_a_bridge_joins_two_different_participants() -> None:
    with pytest.raises(InvalidArgument):
        Bridge(("alice", "alice"))


async def test_legs_join_a_bridge_one_at_a_time_two_at_most() -> None:
    bridge = Bridge((), CONFIG)
    bridge.add_leg("alice")
    with pytest.raises(InvalidArgument):
        bridge.add_leg("alice")
    bridge.add_leg("bob")
    assert bridge.full and [leg.name for leg in bridge.legs] == ["alice", "bob"]
    with pytest.raises(FailedPrecondition):
        bridge.add_leg("carol")
    await bridge.close()
    with pytest.raises(FailedPrecondition):
        bridge.add_leg("carol")


async def test_sections_other_than_the_first_audio_are_made_inactive() -> None:
    peer, offer = await _offer("audio", "video")
    leg = Leg("alice", CONFIG)
    try:
        answer = await leg.answer(offer, outbound=ForwardedTrack())
        audio, video = answer.split("m=")[1:]
        assert audio.startswith("audio") and "a=sendrecv" in audio
        assert video.startswith("video") and "a=inactive" in video
    finally:
        await leg.close()
        await peer.close()
