"""Jitter buffers for forwarding: release each encoded frame as soon as it is whole.

aiortc's receivers hold frames back: its audio buffer keeps four frames (about 80 ms), and its
video buffer releases a frame only when the first packet of the *next* frame arrives (one
frame interval, 33 ms at 30 frames/s), because it does not look at the RTP marker bit. A
forwarding receiver has no decoder to feed smoothly (the far end has its own buffer), so
these buffers release at once: :class:`PassThroughJitterBuffer` for audio, where each RTP
packet is one frame, and :class:`FrameJitterBuffer` for VP8 video, where a frame spans several
packets and must still be forwarded whole (the sender re-packetizes each frame it is given).
Both have the interface of aiortc's ``JitterBuffer``: ``add(packet) -> (pli_flag, frame)``,
where the packet carries its depayloaded bytes in ``_data`` (set by the receiver).
"""

from __future__ import annotations

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt, uint32_gt

__all__ = ["FrameJitterBuffer", "PassThroughJitterBuffer", "vp8_frame_start", "vp8_keyframe"]


def _data(packet: RtpPacket) -> bytes:
    data: bytes = getattr(packet, "_data", b"")  # the receiver sets the depayloaded bytes
    return data


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
        return False, JitterFrame(data=_data(packet), timestamp=packet.timestamp)


def vp8_frame_start(payload: bytes) -> bool:
    """Whether an RTP payload (still with its VP8 payload descriptor) starts a frame.

    RFC 7741 section 4.2: the S bit set with partition index 0 marks a frame's first packet.
    """
    return bool(payload) and payload[0] & 0x10 != 0 and payload[0] & 0x07 == 0


def vp8_keyframe(frame: bytes) -> bool:
    """Whether a whole VP8 frame (payload descriptors removed) is a keyframe.

    RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a keyframe.
    """
    return bool(frame) and frame[0] & 0x01 == 0


class FrameJitterBuffer:
    """A video jitter buffer that releases each frame when its last packet has arrived.

    A frame is the packets with one RTP timestamp; it is whole when its first packet (VP8
    start bit), its last packet (RTP marker bit) and every sequence number between them are
    there, in any arrival order. It is released at once, without waiting for the next frame,
    and frames leave in timestamp order: when a newer frame is released first, the older
    incomplete ones are dropped (they can no longer be forwarded in order), and ``pli_flag``
    asks the publisher for a keyframe, since what follows a lost frame cannot be decoded.
    At most ``capacity`` packets wait; beyond that the oldest frames are dropped the same way.
    """

    def __init__(self, capacity: int = 512) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._frames: dict[int, dict[int, RtpPacket]] = {}
        self._waiting = 0
        self._released: int | None = None
        #: Packets dropped as duplicate or late, and incomplete frames dropped.
        self.dropped_packets = 0
        self.dropped_frames = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Return ``(pli_flag, frame)``: the frame ``packet`` completed, if any."""
        timestamp = packet.timestamp
        if self._released is not None and not uint32_gt(timestamp, self._released):
            self.dropped_packets += 1
            return False, None
        packets = self._frames.setdefault(timestamp, {})
        if packet.sequence_number in packets:
            self.dropped_packets += 1
            return False, None
        packets[packet.sequence_number] = packet
        self._waiting += 1
        data = self._whole(packets)
        if data is None:
            return self._bound(), None
        lost = self._drop_until(timestamp)
        del self._frames[timestamp]
        self._waiting -= len(packets)
        self._released = timestamp
        return lost, JitterFrame(data=data, timestamp=timestamp)

    @staticmethod
    def _whole(packets: dict[int, RtpPacket]) -> bytes | None:
        last = next((p for p in packets.values() if p.marker), None)
        first = next((p for p in packets.values() if vp8_frame_start(p.payload)), None)
        if last is None or first is None:
            return None
        span = uint16_add(last.sequence_number, -first.sequence_number) + 1
        if span != len(packets):
            return None
        ordered = sorted(
            packets.values(), key=lambda p: uint16_add(p.sequence_number, -first.sequence_number)
        )
        if ordered[0] is not first or ordered[-1] is not last:
            return None
        return b"".join(_data(p) for p in ordered)

    def _drop_until(self, timestamp: int) -> bool:
        """Drop the frames older than ``timestamp``; whether any was dropped."""
        older = [t for t in self._frames if uint32_gt(timestamp, t)]
        for stale in older:
            self._waiting -= len(self._frames.pop(stale))
        self.dropped_frames += len(older)
        return bool(older)

    def _bound(self) -> bool:
        lost = False
        while self._waiting > self.capacity and self._frames:
            oldest = next(iter(self._frames))  # frames are kept in the order they began
            self._waiting -= len(self._frames.pop(oldest))
            self.dropped_frames += 1
            lost = True
        return lost
