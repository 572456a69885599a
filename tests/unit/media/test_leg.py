"""A leg refuses what it cannot answer and ends cleanly without a call."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from procall.errors import FailedPrecondition, InvalidArgument, NotFound
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


async def test_an_audio_and_video_offer_gets_vp8_video_when_the_leg_sends_video() -> None:
    peer, offer = await _offer("audio", "video", "video")
    leg = Leg("alice", CONFIG)
    try:
        answer = await leg.answer(
            offer, outbound=ForwardedTrack(), outbound_video=ForwardedTrack(kind="video")
        )
        audio, video, second_video = answer.split("m=")[1:]
        assert "a=sendrecv" in audio and "opus/48000" in audio
        rtpmaps = [line for line in video.splitlines() if line.startswith("a=rtpmap")]
        assert "a=sendrecv" in video and len(rtpmaps) == 1 and "VP8/90000" in rtpmaps[0]
        assert "a=inactive" in second_video
        assert leg.has_video and leg.video_tap is not None
    finally:
        await leg.close()
        await peer.close()
    assert leg.video_inbound.readyState == "ended"


async def test_a_replacing_leg_takes_the_slot_when_answered_and_the_old_one_closes() -> None:
    bridge = Bridge((), CONFIG)
    peers = []
    try:
        for name in ("alice", "bob"):
            peer, offer = await _offer("audio", "video")
            peers.append(peer)
            bridge.add_leg(name)
            await bridge.answer(name, offer)
        old = bridge.leg("bob")
        with pytest.raises(FailedPrecondition):
            bridge.add_leg("carol")  # a third party is still refused
        with pytest.raises(NotFound):
            bridge.add_leg("bob-2", replaces="nobody")
        new = bridge.add_leg("bob-2", replaces="bob")
        assert new.inbound is old.inbound and new.video_inbound is old.video_inbound
        with pytest.raises(FailedPrecondition):
            bridge.add_leg("bob-3", replaces="bob")  # one replacement at a time
        # A refused offer changes nothing: the old leg stays, and can be replaced later.
        with pytest.raises(InvalidArgument):
            await bridge.answer("bob-2", "v=0\r\n")
        assert [leg.name for leg in bridge.legs] == ["alice", "bob"] and not old.ended
        bridge.add_leg("bob-2", replaces="bob")
        peer, offer = await _offer("audio", "video")
        peers.append(peer)
        await bridge.answer("bob-2", offer)
        assert [leg.name for leg in bridge.legs] == ["alice", "bob-2"]
        assert old.ended and not bridge.closed and bridge.full
        # The slot's tracks outlive the replaced leg's sender, which stopped its own reader.
        assert old.inbound.readyState == "live"
        assert bridge.leg("alice").inbound.readyState == "live"
    finally:
        await bridge.close()
        for peer in peers:
            await peer.close()
    assert all(leg.ended for leg in bridge.legs)
