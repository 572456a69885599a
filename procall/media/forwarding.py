"""Encoded forwarding: a receiver's frames go to another leg's sender without a decode.

A receiver normally hands each reassembled encoded frame to its decoder thread and the sender
of the other leg encodes the decoded audio again. Here :func:`tap_receiver` swaps two private
parts of the receiver (see :mod:`procall.media.internals`): its decoder queue becomes a
:class:`PacketTap` that wraps each frame in an :class:`av.Packet` and pushes it onto a
:class:`ForwardedTrack`, and its jitter buffer becomes a :class:`PassThroughJitterBuffer`
(aiortc's audio buffer holds four frames back, about 80 ms; the far end has its own buffer).
The sender packetizes an ``av.Packet`` as it is, so Opus bytes cross the relay unchanged.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeAlias

import av
from aiortc import RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_gt

from procall.media.internals import DECODER_QUEUE_ATTRIBUTE, JITTER_BUFFER_ATTRIBUTE

__all__ = [
    "DEFAULT_QUEUE_PACKETS",
    "ForwardedTrack",
    "PacketTap",
    "PassThroughJitterBuffer",
    "tap_receiver",
]

if TYPE_CHECKING:
    from av.stream import Stream

    #: What a forwarded track carries: one encoded frame (pts in 1 / clock rate). PyAV's
    #: Packet is generic in its stubs only, hence the alias exists for type checking only.
    EncodedPacket: TypeAlias = av.Packet[Stream]

#: Packets a forwarded track keeps before dropping the oldest: 160 ms of 20 ms audio frames.
DEFAULT_QUEUE_PACKETS = 8


class ForwardedTrack(MediaStreamTrack):
    """An audio track of encoded packets, fed by a :class:`PacketTap`, read by a sender.

    ``recv()`` returns :class:`av.Packet`. The queue is bounded: when the sender falls behind
    (or has not started yet) the oldest packet is dropped, so a slow leg never grows memory
    nor lags further behind real time than ``max_packets`` frames.
    """

    kind = "audio"

    def __init__(self, max_packets: int = DEFAULT_QUEUE_PACKETS) -> None:
        super().__init__()
        if max_packets < 1:
            raise ValueError("max_packets must be at least 1")
        self._packets: deque[EncodedPacket] = deque(maxlen=max_packets)
        self._ready = asyncio.Event()
        #: Packets pushed, and packets dropped because the queue was full.
        self.pushed = 0
        self.dropped = 0

    def push(self, packet: EncodedPacket) -> None:
        """Queue ``packet`` for the sender (event loop only); ignored once the track ended."""
        if self.readyState != "live":
            return
        if len(self._packets) == self._packets.maxlen:
            self.dropped += 1
        self._packets.append(packet)
        self.pushed += 1
        self._ready.set()

    async def recv(self) -> EncodedPacket:
        """The next encoded packet; raises ``MediaStreamError`` once the track has ended."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._packets:
                return self._packets.popleft()
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        """End the track and wake a sender waiting in ``recv()``."""
        super().stop()
        self._packets.clear()
        self._ready.set()


class PacketTap:
    """Stands in for one receiver's decoder queue and forwards its frames still encoded.

    The receiver calls ``put((codec, JitterFrame))`` on the event loop for every reassembled
    frame; the tap turns it into an :class:`av.Packet` (pts = RTP timestamp, time base = 1 /
    clock rate, which is what the sender's packetizer expects) and pushes it onto ``sink``.
    ``None`` (end of stream) and ``get()`` go to the original queue, so the receiver's decoder
    thread, which never sees a frame, still ends the receiver's own track when it stops.
    """

    def __init__(
        self, decoder_queue: queue.Queue[Any], sink: ForwardedTrack, mime_type: str
    ) -> None:
        self._decoder_queue = decoder_queue
        self._sink = sink
        self._mime_type = mime_type.lower()
        #: Frames forwarded, and frames refused because they were not in the forced codec.
        self.forwarded = 0
        self.refused = 0

    def put(
        self,
        item: tuple[RTCRtpCodecParameters, JitterFrame] | None,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Forward one encoded frame, or pass the end of stream on to the decoder thread."""
        if item is None:
            self._decoder_queue.put(None, block, timeout)
            return
        codec, frame = item
        if codec.mimeType.lower() != self._mime_type:
            # The far end would decode these bytes with the sender's codec: never mislabel.
            self.refused += 1
            return
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = Fraction(1, codec.clockRate)
        self.forwarded += 1
        self._sink.push(packet)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """What the receiver's decoder thread reads: only the end of stream ever arrives."""
        return self._decoder_queue.get(block, timeout)

    @property
    def frames_for_decoder(self) -> int:
        """Items waiting for the decoder thread (stays 0: frames never reach a decoder)."""
        return self._decoder_queue.qsize()


class PassThroughJitterBuffer:
    """A jitter buffer that releases each audio packet at once, in arrival order.

    Each Opus RTP packet is one whole frame, so nothing needs reassembling. Duplicates and
    packets older than the newest one seen are dropped (late audio is useless to forward; the
    far end's jitter buffer smooths what arrives). Same interface as aiortc's ``JitterBuffer``.
    """

    capacity = 16

    def __init__(self) -> None:
        self._newest: int | None = None
        #: Packets dropped as duplicate or late.
        self.dropped = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Return ``(pli_flag, frame)``: never a picture-loss request, the frame unless stale."""
        if self._newest is not None and not uint16_gt(packet.sequence_number, self._newest):
            self.dropped += 1
            return False, None
        self._newest = packet.sequence_number
        data: bytes = getattr(packet, "_data", b"")  # the receiver sets the depayloaded bytes
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


def tap_receiver(receiver: RTCRtpReceiver, sink: ForwardedTrack, mime_type: str) -> PacketTap:
    """Make ``receiver`` forward its encoded frames to ``sink`` instead of decoding them.

    Call before the receiver starts (before the offer/answer completes). Raises
    ``RuntimeError`` when aiortc no longer has the private parts this relies on.
    """
    decoder_queue = getattr(receiver, DECODER_QUEUE_ATTRIBUTE, None)
    if not isinstance(decoder_queue, queue.Queue):
        raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no {DECODER_QUEUE_ATTRIBUTE}")
    if not hasattr(receiver, JITTER_BUFFER_ATTRIBUTE):
        raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no {JITTER_BUFFER_ATTRIBUTE}")
    tap = PacketTap(decoder_queue, sink, mime_type)
    setattr(receiver, DECODER_QUEUE_ATTRIBUTE, tap)
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, PassThroughJitterBuffer())
    return tap
