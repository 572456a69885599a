"""The softphone against real aiortc answering peers on loopback, through a stand-in for
the client (the ``MediaNegotiator`` seam): re-anchoring, a move during the first
negotiation, the end of the call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from procall.client import Call, CallChanged, Softphone, ToneSource
from procall.media import LOOPBACK, host_addresses
from tests.helpers.media import tone_power


class LocalMedia:
    """Answers offers with local aiortc peers playing 660 Hz, as if on ``server``."""

    def __init__(self) -> None:
        self.server = "m1"
        self.answered: list[str] = []
        self.peers: list[RTCPeerConnection] = []
        self.before_answer: list[str] = []  # servers to move to while the next one negotiates

    async def negotiate_media(self, call_id: str, sdp_offer: str) -> tuple[str, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp_offer, type="offer"))
        pc.addTrack(ToneSource(660).track())
        with host_addresses(LOOPBACK):
            await pc.setLocalDescription(await pc.createAnswer())
        answered_by = self.server
        self.answered.append(answered_by)
        if self.before_answer:
            self.server = self.before_answer.pop()
            self.phone.on_event(_changed(call_id, "connected", self.server))
        assert pc.localDescription is not None
        return pc.localDescription.sdp, answered_by

    async def get_call(self, call_id: str) -> Call:
        return Call(call_id, "connected", "a", "b", media_server_id=self.server)

    async def close(self) -> None:
        for pc in self.peers:
            await pc.close()

    phone: Softphone


def _changed(call_id: str, state: str, server: str, reason: str = "") -> CallChanged:
    return CallChanged(call_id, state, "a", "b", end_reason=reason, media_server_id=server)


async def _wait(condition: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_reanchors_on_a_new_media_server_and_closes_at_the_end() -> None:
    media = LocalMedia()
    phone = media.phone = Softphone(media, ToneSource(440), host_addresses=LOOPBACK)
    try:
        assert await phone.start("c1") == "m1"
        await phone.wait_for_audio()
        phone.on_event(_changed("other", "connected", "m9"))  # not its call
        phone.on_event(_changed("c1", "connected", "m1"))  # same server: nothing to do
        await asyncio.sleep(0.3)
        assert phone.negotiations == 1
        media.server = "m2"
        phone.on_event(_changed("c1", "connected", "m2"))
        await _wait(lambda: phone.negotiations == 2 and phone.audio_at is not None)
        assert phone.media_server_id == "m2" and media.answered == ["m1", "m2"]
        await asyncio.sleep(0.5)
        heard = phone.recent(0.4)
        assert tone_power(heard, 660) > 100 * tone_power(heard, 440)
        phone.on_event(_changed("c1", "ended", "m2", "hangup"))
        assert phone.ended.is_set() and phone.end_reason == "hangup"
        await _wait(lambda: phone.audio_at is None)  # closed by itself
    finally:
        await phone.stop()
        await media.close()


async def test_a_move_during_the_first_negotiation_is_followed() -> None:
    media = LocalMedia()
    media.before_answer = ["m2"]
    phone = media.phone = Softphone(media, None, host_addresses=LOOPBACK)
    try:
        assert await phone.start("c1") == "m1"  # answered by m1, but the call is on m2 now
        await _wait(lambda: phone.negotiations == 2 and phone.audio_at is not None)
        assert phone.media_server_id == "m2"
    finally:
        await phone.stop()
        await media.close()
