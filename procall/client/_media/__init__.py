"""The softphone of the client SDK: one call's audio on an aiortc peer connection.

``audio`` holds what it sends (``ToneSource``, ``WavSource``) and what it keeps of what it
hears (``Recording``); ``softphone`` the ``Softphone`` that negotiates through the client and
follows the call to another MediaServer. Re-exported by ``procall.client``.
"""

from procall.client._media.audio import (
    SAMPLE_RATE,
    AudioSource,
    Recording,
    ToneSource,
    WavSource,
)
from procall.client._media.softphone import MediaNegotiator, Softphone

__all__ = [
    "SAMPLE_RATE",
    "AudioSource",
    "MediaNegotiator",
    "Recording",
    "Softphone",
    "ToneSource",
    "WavSource",
]
