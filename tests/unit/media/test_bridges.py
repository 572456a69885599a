"""The registry: the same user negotiating again replaces its leg; a third user is refused."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from procall.errors import FailedPrecondition, InvalidArgument, NotFound
from procall.media import LOOPBACK, Bridges, MediaConfig, host_addresses


async def _offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    pc.addTransceiver("video")
    with host_addresses(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    return pc, pc.localDescription.sdp


async def test_the_same_user_negotiating_again_replaces_its_leg() -> None:
    counts: list[int] = []
    bridges = Bridges(MediaConfig(host_addresses=LOOPBACK), capacity=2, on_count=counts.append)
    peers = [await _offer() for _ in range(5)]
    try:
        alice, _ = await bridges.create_leg("call", "alice", peers[0][1])
        bob, _ = await bridges.create_leg("call", "bob", peers[1][1])
        with pytest.raises(FailedPrecondition):
            await bridges.create_leg("call", "carol", peers[2][1])
        # A refused new offer of Bob's leaves his leg as it was.
        with pytest.raises(InvalidArgument):
            await bridges.create_leg("call", "bob", "v=0\r\n")
        assert {leg.leg_id for leg in bridges.get_bridge("call").legs} == {
            alice.leg_id,
            bob.leg_id,
        }
        new_bob, answer = await bridges.create_leg("call", "bob", peers[3][1])
        assert "m=video" in answer and new_bob.leg_id != bob.leg_id
        legs = bridges.get_bridge("call").legs
        assert [(leg.leg_id, leg.user_id) for leg in legs] == [
            (alice.leg_id, "alice"),
            (new_bob.leg_id, "bob"),
        ]
        assert (bridges.load().bridges, bridges.load().legs) == (1, 2)
        with pytest.raises(NotFound):
            await bridges.delete_leg(bob.leg_id)
        # Alice negotiating again replaces hers too; the bridge is the same one throughout.
        await bridges.create_leg("call", "alice", peers[4][1])
        assert (bridges.load().bridges, bridges.load().legs) == (1, 2)
        assert counts == [1]
    finally:
        await bridges.close()
        for pc, _ in peers:
            await pc.close()
    assert bridges.load().bridges == 0
