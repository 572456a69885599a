"""The forwarding parts on their own: the bounded track, the tap and the pass-through buffer."""

from __future__ import annotations

import asyncio
import queue
from fractions import Fraction

import av
import pytest
from aiortc import RTCRtpCodecParameters
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from procall.media import ForwardedTrack, PacketTap, PassThroughJitterBuffer

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
PCMU = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)


def _packet(n: int) -> av.Packet:
    packet = av.Packet(bytes([n]))
    packet.pts = n
    return packet


async def test_a_full_track_drops_the_oldest_packet() -> None:
    track = ForwardedTrack(max_packets=3)
    for n in range(5):
        track.push(_packet(n))
    assert (track.pushed, track.dropped) == (5, 2)
    assert [bytes(await track.recv()) for _ in range(3)] == [b"\x02", b"\x03", b"\x04"]


async def test_stopping_the_track_wakes_a_waiting_sender() -> None:
    track = ForwardedTrack()
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)
    track.push(_packet(1))  # ignored once ended
    assert track.pushed == 0


async def test_the_tap_forwards_packets_and_passes_the_end_to_the_decoder() -> None:
    decoder_queue: queue.Queue[object] = queue.Queue()
    track = ForwardedTrack()
    tap = PacketTap(decoder_queue, track, "audio/opus")
    tap.put((OPUS, JitterFrame(data=b"opus", timestamp=960)))
    tap.put((PCMU, JitterFrame(data=b"pcmu", timestamp=160)))
    packet = await track.recv()
    assert (bytes(packet), packet.pts, packet.time_base) == (b"opus", 960, Fraction(1, 48000))
    assert (tap.forwarded, tap.refused, tap.frames_for_decoder) == (1, 1, 0)
    tap.put(None)
    assert tap.get(timeout=1) is None


def test_the_pass_through_buffer_releases_at_once_and_drops_stale_packets() -> None:
    buffer = PassThroughJitterBuffer()
    released = []
    for sequence in (65534, 65535, 0, 65535, 2, 1):
        packet = RtpPacket(sequence_number=sequence, timestamp=sequence * 960)
        packet._data = bytes([sequence % 256])  # type: ignore[attr-defined]
        pli, frame = buffer.add(packet)
        assert not pli
        if frame is not None:
            released.append(frame.data)
    assert released == [b"\xfe", b"\xff", b"\x00", b"\x02"]
    assert buffer.dropped == 2


async def test_a_video_tap_asks_for_a_keyframe_until_one_has_passed() -> None:
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    track = ForwardedTrack(kind="video")
    tap = PacketTap(queue.Queue(), track, "video/VP8")
    asked: list[int] = []
    tap.on_keyframe_missing = lambda: asked.append(tap.forwarded)
    for data in (b"\x01inter", b"\x01inter", b"\x00key", b"\x01inter"):
        tap.put((vp8, JitterFrame(data=data, timestamp=3000)))
    assert asked == [1, 2] and tap.forwarded == 4  # forwarded all the same


async def test_a_new_source_goes_on_from_the_last_timestamp() -> None:
    """A replaced publisher's successor starts its timestamps over: the track re-bases them."""
    track = ForwardedTrack(max_packets=10)
    old, new = object(), object()
    for pts in (0, 960, 1920):
        track.push(_pts_packet(pts), source=old)
    for pts in (0, 960):
        track.push(_pts_packet(pts), source=new)
    track.push(_pts_packet(2880), source=old)  # a late packet of the old source: same rule
    assert [(await track.recv()).pts for _ in range(6)] == [0, 960, 1920, 2880, 3840, 4800]


def _pts_packet(pts: int) -> av.Packet:
    packet = av.Packet(b"x")
    packet.pts = pts
    return packet
