"""Encoded forwarding: a receiver's frames go to another leg's sender without a decode.

A receiver normally hands each reassembled encoded frame to its decoder thread and the sender
of the other leg encodes the decoded audio again. Here :func:`tap_receiver` swaps two private
parts of the receiver (see :mod:`procall.media.internals`): its decoder queue becomes a
:class:`PacketTap` that wraps each frame in an :class:`av.Packet` and pushes it onto a
:class:`ForwardedTrack`, and its jitter buffer becomes a :class:`PassThroughJitterBuffer`
or a :class:`FrameJitterBuffer` for video (:mod:`procall.media.jitter`: frames leave as soon as
they are whole; the far end has its own buffer). The sender packetizes an ``av.Packet`` as it
is: Opus bytes cross the relay unchanged, and each VP8 frame is re-split into RTP payloads.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeAlias

import av
from aiortc import RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from procall.media.internals import DECODER_QUEUE_ATTRIBUTE, JITTER_BUFFER_ATTRIBUTE
from procall.media.jitter import FrameJitterBuffer, PassThroughJitterBuffer, vp8_keyframe

__all__ = [
    "DEFAULT_QUEUE_PACKETS",
    "ForwardedTrack",
    "PacketTap",
    "tap_receiver",
]

if TYPE_CHECKING:
    from av.stream import Stream

    #: What a forwarded track carries: one encoded frame (pts in 1 / clock rate). PyAV's
    #: Packet is generic in its stubs only, hence the alias exists for type checking only.
    EncodedPacket: TypeAlias = av.Packet[Stream]

#: The video codec whose frames a tap checks for keyframes.
VP8 = "video/vp8"

#: Packets a forwarded track keeps before dropping the oldest: 160 ms of 20 ms audio frames,
#: or about 270 ms of video at 30 frames/s.
DEFAULT_QUEUE_PACKETS = 8


class ForwardedTrack(MediaStreamTrack):
    """A track (``kind`` audio or video) of encoded frames, fed by a :class:`PacketTap`.

    ``recv()`` returns :class:`av.Packet`, one whole encoded frame each. The queue is bounded:
    when the sender falls behind (or has not started yet) the oldest packet is dropped, so a
    slow leg never grows memory nor lags further behind real time than ``max_packets`` frames
    (a dropped video frame breaks decoding until the next keyframe, which the bridge asks the
    publisher for when a receiver joins and whenever the receiver's far end asks).

    A sender stops the track it reads when it ends; a bridge that hands one track to a
    replaced leg's sender and then to its successor gives each sender its own :meth:`reader`.

    When the publisher changes (a replaced leg's tap gives way to its successor's), the new
    source's timestamps start over (each receiver maps its RTP timestamps from 0): they are
    re-based to go on one frame after the last packet, so the far end sees one continuous,
    increasing timeline (a jump back would look like old media to its jitter buffer).
    """

    kind = "audio"

    def __init__(self, max_packets: int = DEFAULT_QUEUE_PACKETS, kind: str = "audio") -> None:
        super().__init__()
        if max_packets < 1:
            raise ValueError("max_packets must be at least 1")
        if kind not in ("audio", "video"):
            raise ValueError(f"a track is audio or video, not {kind}")
        self.kind = kind
        self._packets: deque[EncodedPacket] = deque(maxlen=max_packets)
        self._ready = asyncio.Event()
        self._source: object | None = None
        self._offset = 0
        self._last_pts: int | None = None
        self._step = 1
        #: Packets pushed, and packets dropped because the queue was full.
        self.pushed = 0
        self.dropped = 0

    def push(self, packet: EncodedPacket, source: object | None = None) -> None:
        """Queue ``packet`` for the sender (event loop only); ignored once the track ended.

        ``source`` is what pushed it (a tap): a new source's timestamps are re-based.
        """
        if self.readyState != "live":
            return
        self._rebase(packet, source)
        if len(self._packets) == self._packets.maxlen:
            self.dropped += 1
        self._packets.append(packet)
        self.pushed += 1
        self._ready.set()

    def _rebase(self, packet: EncodedPacket, source: object | None) -> None:
        if packet.pts is None:
            return
        if source is not self._source:
            if self._source is not None and self._last_pts is not None:
                self._offset = self._last_pts + self._step - packet.pts
            self._source = source
        packet.pts += self._offset
        if self._last_pts is not None and packet.pts > self._last_pts:
            self._step = packet.pts - self._last_pts
        self._last_pts = packet.pts

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

    def reader(self) -> MediaStreamTrack:
        """A track for one sender that reads this one: stopping it leaves this track live."""
        return _Reader(self)


class _Reader(MediaStreamTrack):
    """One sender's view of a :class:`ForwardedTrack` (see :meth:`ForwardedTrack.reader`)."""

    def __init__(self, source: ForwardedTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source

    async def recv(self) -> EncodedPacket:
        """The source's next packet; raises ``MediaStreamError`` once either has ended."""
        if self.readyState != "live":
            raise MediaStreamError
        return await self._source.recv()


class PacketTap:
    """Stands in for one receiver's decoder queue and forwards its frames still encoded.

    The receiver calls ``put((codec, JitterFrame))`` on the event loop for every reassembled
    frame; the tap turns it into an :class:`av.Packet` (pts = RTP timestamp, time base = 1 /
    clock rate, which is what the sender's packetizer expects) and pushes it onto ``sink``.
    ``None`` (end of stream) and ``get()`` go to the original queue, so the receiver's decoder
    thread, which never sees a frame, still ends the receiver's own track when it stops.

    Video (VP8) must start with a keyframe, and the publisher's first one can be lost (its
    packets may arrive before the receiver is started): until a keyframe has passed, every
    frame calls :attr:`on_keyframe_missing` (the leg asks the publisher, rate-limited).
    """

    def __init__(
        self, decoder_queue: queue.Queue[Any], sink: ForwardedTrack, mime_type: str
    ) -> None:
        self._decoder_queue = decoder_queue
        self._sink = sink
        self._mime_type = mime_type.lower()
        self._awaiting_keyframe = self._mime_type == VP8
        #: Called for each frame forwarded before the first keyframe (VP8 only).
        self.on_keyframe_missing: Callable[[], None] | None = None
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
        self._sink.push(packet, source=self)
        if self._awaiting_keyframe:
            if vp8_keyframe(frame.data):
                self._awaiting_keyframe = False
            elif self.on_keyframe_missing is not None:
                self.on_keyframe_missing()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """What the receiver's decoder thread reads: only the end of stream ever arrives."""
        return self._decoder_queue.get(block, timeout)

    @property
    def frames_for_decoder(self) -> int:
        """Items waiting for the decoder thread (stays 0: frames never reach a decoder)."""
        return self._decoder_queue.qsize()


def tap_receiver(receiver: RTCRtpReceiver, sink: ForwardedTrack, mime_type: str) -> PacketTap:
    """Make ``receiver`` forward its encoded frames to ``sink`` instead of decoding them.

    Call before the receiver starts (before the offer/answer completes). Video (a
    ``video/`` ``mime_type``) gets a :class:`FrameJitterBuffer`, audio a
    :class:`PassThroughJitterBuffer`. Raises ``RuntimeError`` when aiortc no longer has the
    private parts this relies on.
    """
    decoder_queue = getattr(receiver, DECODER_QUEUE_ATTRIBUTE, None)
    if not isinstance(decoder_queue, queue.Queue):
        raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no {DECODER_QUEUE_ATTRIBUTE}")
    if not hasattr(receiver, JITTER_BUFFER_ATTRIBUTE):
        raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no {JITTER_BUFFER_ATTRIBUTE}")
    tap = PacketTap(decoder_queue, sink, mime_type)
    setattr(receiver, DECODER_QUEUE_ATTRIBUTE, tap)
    video = mime_type.lower().startswith("video/")
    buffer = FrameJitterBuffer() if video else PassThroughJitterBuffer()
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, buffer)
    return tap
