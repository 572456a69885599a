"""The MediaServer's media settings shared by its legs and bridges."""

from __future__ import annotations

from dataclasses import dataclass

from procall.media.forwarding import DEFAULT_QUEUE_PACKETS

__all__ = ["AUDIO_CODEC", "MediaConfig"]

#: The one audio codec of every leg: forwarded bytes are labelled with the sender's codec, so
#: both legs of a bridge must agree on it.
AUDIO_CODEC = "audio/opus"


@dataclass(frozen=True)
class MediaConfig:
    """How legs are built.

    ``host_addresses`` are the only local addresses offered as ICE host candidates (``None``:
    every interface aioice finds, loopback excepted; tests use ``("127.0.0.1",)``). No STUN or
    TURN server is ever configured. ``queue_packets`` bounds each forwarded track.
    """

    host_addresses: tuple[str, ...] | None = None
    queue_packets: int = DEFAULT_QUEUE_PACKETS
    audio_codec: str = AUDIO_CODEC
