"""Host candidates come only from the configured addresses, and only inside the block."""

from __future__ import annotations

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection

from procall.media import LOOPBACK, host_addresses, install_host_address_hook


def test_the_choice_holds_only_inside_the_block() -> None:
    install_host_address_hook()
    outside = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    with host_addresses(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == [
            "127.0.0.1",
            "::1",
        ]
        with host_addresses(None):
            assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == outside
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == outside
    assert "127.0.0.1" not in outside


def test_installing_twice_keeps_one_hook() -> None:
    install_host_address_hook()
    hook = aioice.ice.get_host_addresses
    install_host_address_hook()
    assert aioice.ice.get_host_addresses is hook


async def test_an_offer_gathered_in_the_block_has_only_loopback_candidates() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio")
        with host_addresses(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")
        ]
        assert candidates
        assert all(" 127.0.0.1 " in line for line in candidates), candidates
    finally:
        await pc.close()
