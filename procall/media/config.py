"""The MediaServer's media settings shared by its legs and bridges."""

from __future__ import annotations

from dataclasses import dataclass

from procall.media.forwarding import DEFAULT_QUEUE_PACKETS
from procall.media.keyframes import DEFAULT_KEYFRAME_INTERVAL

__all__ = ["AUDIO_CODEC", "VIDEO_CODEC", "MediaConfig"]

#: The one audio codec of every leg: forwarded bytes are labelled with the sender's codec, so
#: both legs of a bridge must agree on it.
AUDIO_CODEC = "audio/opus"
#: The one video codec of every leg, for the same reason.
VIDEO_CODEC = "video/VP8"


@dataclass(frozen=True)
class MediaConfig:
    """How legs are built.

    ``host_addresses`` are the only local addresses offered as ICE host candidates (``None``:
    every interface aioice finds, loopback excepted; tests use ``("127.0.0.1",)``). No STUN or
    TURN server is ever configured. ``queue_packets`` bounds each forwarded track (in frames).
    ``keyframe_interval`` is the shortest time between two keyframe requests to a publisher.
    """

    host_addresses: tuple[str, ...] | None = None
    queue_packets: int = DEFAULT_QUEUE_PACKETS
    audio_codec: str = AUDIO_CODEC
    video_codec: str = VIDEO_CODEC
    keyframe_interval: float = DEFAULT_KEYFRAME_INTERVAL
