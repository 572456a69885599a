"""The video jitter buffer: whole VP8 frames, released on their last packet, in order."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from procall.media import FrameJitterBuffer, PassThroughJitterBuffer

START = b"\x10"  # VP8 payload descriptor: S bit, partition 0
MIDDLE = b"\x00"


def _packet(sequence: int, timestamp: int, data: bytes, *, first: bool, last: bool) -> RtpPacket:
    packet = RtpPacket(
        sequence_number=sequence,
        timestamp=timestamp,
        marker=int(last),
        payload=(START if first else MIDDLE) + data,
    )
    packet._data = data  # type: ignore[attr-defined]  # what the receiver's depayload gives
    return packet


def _frame(first_sequence: int, timestamp: int, parts: list[bytes]) -> list[RtpPacket]:
    return [
        _packet(
            (first_sequence + n) % 65536,
            timestamp,
            part,
            first=n == 0,
            last=n == len(parts) - 1,
        )
        for n, part in enumerate(parts)
    ]


def test_a_frame_is_released_whole_on_its_last_packet_without_waiting_for_the_next() -> None:
    buffer = FrameJitterBuffer()
    first, middle, last = _frame(100, 3000, [b"a", b"b", b"c"])
    assert buffer.add(first) == (False, None)
    assert buffer.add(middle) == (False, None)
    pli, frame = buffer.add(last)
    assert not pli and frame is not None
    assert (frame.data, frame.timestamp) == (b"abc", 3000)


def test_packets_out_of_order_and_across_the_sequence_wrap_are_reassembled() -> None:
    buffer = FrameJitterBuffer()
    packets = _frame(65534, 6000, [b"1", b"2", b"3", b"4"])
    released = [buffer.add(packet)[1] for packet in (packets[3], packets[1], packets[0])]
    assert released == [None, None, None]
    _, frame = buffer.add(packets[2])
    assert frame is not None and frame.data == b"1234"
    # A duplicate or a late packet of a released frame is dropped.
    assert buffer.add(packets[2]) == (False, None)
    assert buffer.dropped_packets == 1


def test_a_frame_with_a_lost_packet_is_dropped_and_a_keyframe_asked() -> None:
    buffer = FrameJitterBuffer()
    lost = _frame(10, 1000, [b"x", b"y", b"z"])
    buffer.add(lost[0])
    buffer.add(lost[2])  # lost[1] never comes
    pli, frame = buffer.add(_frame(13, 4000, [b"next"])[0])
    assert pli and frame is not None and frame.data == b"next"
    assert buffer.dropped_frames == 1
    assert buffer.add(lost[1]) == (False, None)  # too late: the newer frame went first


def test_the_buffer_is_bounded() -> None:
    buffer = FrameJitterBuffer(capacity=4)
    for n in range(3):  # three frames, each missing its last packet
        buffer.add(_frame(10 * n, 1000 * (n + 1), [b"a", b"b"])[0])
    assert buffer.add(_frame(40, 9000, [b"a", b"b"])[0]) == (False, None)
    pli, _ = buffer.add(_frame(50, 10_000, [b"a", b"b"])[0])
    assert pli and buffer.dropped_frames == 1


def test_the_audio_buffer_would_split_a_video_frame() -> None:
    """Why video needs its own buffer: the audio one releases every packet as a frame."""
    buffer = PassThroughJitterBuffer()
    frames = [buffer.add(packet)[1] for packet in _frame(1, 3000, [b"a", b"b"])]
    assert [frame.data for frame in frames if frame is not None] == [b"a", b"b"]
