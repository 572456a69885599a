"""Keyframe requests: the rate limiter, the requester and the sender watch, at their seams."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from aiortc import RTCRtpSynchronizationSource
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)

from procall.media import KeyframeLimiter, KeyframeRequester, watch_keyframe_requests


def test_one_request_per_interval_the_rest_deferred_once() -> None:
    limiter = KeyframeLimiter(0.3)
    assert limiter.request(10.0) == 0.0
    assert limiter.request(10.1) == pytest.approx(0.2)  # deferred to the end of the interval
    assert limiter.request(10.2) is None  # covered by the deferred one
    assert limiter.request(10.25) is None
    limiter.deferred_sent(10.3)
    assert limiter.request(10.4) == pytest.approx(0.2)
    limiter.deferred_sent(10.6)
    assert limiter.request(10.95) == 0.0  # a quiet interval later: at once again


def test_the_interval_is_not_negative() -> None:
    with pytest.raises(ValueError):
        KeyframeLimiter(-1)


class FakeReceiver:
    """The two things a requester uses of an aiortc receiver."""

    def __init__(self, ssrcs: list[int]) -> None:
        self.ssrcs = ssrcs
        self.plis: list[int] = []

    def getSynchronizationSources(self) -> list[RTCRtpSynchronizationSource]:
        now = datetime.datetime.now()
        return [RTCRtpSynchronizationSource(timestamp=now, source=ssrc) for ssrc in self.ssrcs]

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)


async def test_the_requester_sends_plis_rate_limited_and_deferred() -> None:
    receiver = FakeReceiver([1234])
    requester = KeyframeRequester(receiver, interval=0.1)  # type: ignore[arg-type]
    for _ in range(5):
        requester.request()
    await asyncio.sleep(0.01)
    assert receiver.plis == [1234]
    await asyncio.sleep(0.15)
    assert receiver.plis == [1234, 1234]  # the deferred one, once
    assert (requester.requested, requester.sent) == (5, 2)
    requester.request()  # inside the new interval: deferred, then cancelled by close()
    requester.close()
    await asyncio.sleep(0.15)
    assert receiver.plis == [1234, 1234]
    requester.request()
    assert requester.requested == 6


async def test_nobody_to_ask_before_the_first_packet() -> None:
    receiver = FakeReceiver([])
    requester = KeyframeRequester(receiver)  # type: ignore[arg-type]
    requester.request()
    await asyncio.sleep(0.01)
    assert (receiver.plis, requester.sent) == ([], 0)


class FakeSender:
    def __init__(self) -> None:
        self.handled: list[Any] = []

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        self.handled.append(packet)


async def test_the_watch_sees_pli_and_fir_and_the_sender_still_handles_all() -> None:
    sender = FakeSender()
    heard: list[str] = []
    watch_keyframe_requests(sender, lambda: heard.append("keyframe"))  # type: ignore[arg-type]
    packets = [
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2),
        RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=2),
        RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0),
        RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2),
    ]
    for packet in packets:
        await sender._handle_rtcp_packet(packet)
    assert heard == ["keyframe", "keyframe"]
    assert sender.handled == packets
