"""The MediaServer's media core: aiortc legs and encoded forwarding between them.

No gRPC and no servers here: the MediaService servicer hands SDP offers in and answers out
through :class:`Bridges`, the registry of bridges and legs by id. A :class:`Leg` is one
participant's peer connection; a :class:`Bridge` joins two legs and forwards each one's
Opus and VP8 frames to the other without decoding them (:mod:`procall.media.forwarding`,
:mod:`procall.media.jitter`), passing keyframe requests on to the publisher
(:mod:`procall.media.keyframes`); both rely on the aiortc internals named in
:mod:`procall.media.internals`. ICE host candidates are limited to configured addresses
(:mod:`procall.media.ice`); no public STUN server is used.
"""

from procall.media.bridge import Bridge, BridgeListener
from procall.media.bridges import BridgeInfo, Bridges, LegInfo, LegState, MediaLoad
from procall.media.config import AUDIO_CODEC, VIDEO_CODEC, MediaConfig
from procall.media.forwarding import DEFAULT_QUEUE_PACKETS, ForwardedTrack, PacketTap, tap_receiver
from procall.media.ice import LOOPBACK, host_addresses, install_host_address_hook
from procall.media.internals import VERIFIED_AIORTC_VERSION, aiortc_internals_problems
from procall.media.jitter import FrameJitterBuffer, PassThroughJitterBuffer
from procall.media.keyframes import (
    KeyframeLimiter,
    KeyframeRequester,
    watch_keyframe_requests,
)
from procall.media.leg import EndListener, KeyframeListener, Leg

__all__ = [
    "AUDIO_CODEC",
    "DEFAULT_QUEUE_PACKETS",
    "LOOPBACK",
    "VERIFIED_AIORTC_VERSION",
    "VIDEO_CODEC",
    "Bridge",
    "BridgeInfo",
    "BridgeListener",
    "Bridges",
    "EndListener",
    "ForwardedTrack",
    "FrameJitterBuffer",
    "KeyframeLimiter",
    "KeyframeListener",
    "KeyframeRequester",
    "Leg",
    "LegInfo",
    "LegState",
    "MediaConfig",
    "MediaLoad",
    "PacketTap",
    "PassThroughJitterBuffer",
    "aiortc_internals_problems",
    "host_addresses",
    "install_host_address_hook",
    "tap_receiver",
    "watch_keyframe_requests",
]
