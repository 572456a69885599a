"""A leg: the MediaServer's peer connection with one participant."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from procall.errors import FailedPrecondition, InvalidArgument
from procall.media.config import MediaConfig
from procall.media.forwarding import ForwardedTrack, PacketTap, tap_receiver
from procall.media.ice import host_addresses
from procall.media.keyframes import KeyframeRequester, watch_keyframe_requests

__all__ = ["EndListener", "KeyframeListener", "Leg"]

#: Called once when a leg has ended (on the event loop, must not block).
EndListener = Callable[["Leg"], None]
#: Called when a leg's participant needs a keyframe of the video it receives (event loop).
KeyframeListener = Callable[["Leg"], None]

_ENDING_STATES = frozenset({"failed", "closed"})


class Leg:
    """One ``RTCPeerConnection`` with one participant, answering the participant's offer.

    The participant's media is not decoded: its receivers forward encoded frames to
    :attr:`inbound` (audio) and :attr:`video_inbound` (video, when the offer has video and the
    leg is given a video track to send), which a bridge gives to another leg as that leg's
    outgoing tracks. The leg ends on :meth:`close`, or by itself when its connection fails or
    is closed by the peer; then its inbound tracks end and the end listeners are called once.

    Forwarded video needs keyframes by hand: the keyframe listeners hear when the participant
    needs one of the video it receives (its connection came up, or its far end sent a PLI or
    FIR), and :meth:`request_keyframe` asks the participant for one of the video it sends.

    The inbound tracks may be given by the leg's owner (a bridge whose other leg's sender reads
    them before this leg exists); the owner then ends them, the leg leaves them live.
    """

    def __init__(
        self,
        name: str,
        config: MediaConfig,
        inbound: ForwardedTrack | None = None,
        video_inbound: ForwardedTrack | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._owns_inbound = inbound is None
        self._owns_video_inbound = video_inbound is None
        #: The participant's audio, still encoded, for another leg's sender.
        self.inbound = inbound or ForwardedTrack(max_packets=config.queue_packets)
        #: The participant's video, still encoded, for another leg's sender.
        self.video_inbound = video_inbound or ForwardedTrack(
            max_packets=config.queue_packets, kind="video"
        )
        self._pc: RTCPeerConnection | None = None
        self._tap: PacketTap | None = None
        self._video_tap: PacketTap | None = None
        self._sends_video = False
        self._keyframes: KeyframeRequester | None = None
        self._keyframe_listeners: list[KeyframeListener] = []
        self._end_task: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self._listeners: list[EndListener] = []

    @property
    def connection_state(self) -> str:
        """The peer connection's state (``new`` before the offer is answered)."""
        return "new" if self._pc is None else self._pc.connectionState

    @property
    def ended(self) -> bool:
        """Whether the leg has ended (it cannot be reused)."""
        return self._ended.is_set()

    @property
    def tap(self) -> PacketTap | None:
        """The receiver's tap once the offer is answered (its counters show the forwarding)."""
        return self._tap

    @property
    def video_tap(self) -> PacketTap | None:
        """The video receiver's tap, when the leg negotiated video."""
        return self._video_tap

    @property
    def has_video(self) -> bool:
        """Whether the answer accepted the participant's video (both ways)."""
        return self._sends_video

    @property
    def keyframe_requests_sent(self) -> int:
        """Keyframe requests (PLIs) sent to the participant so far."""
        return 0 if self._keyframes is None else self._keyframes.sent

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The underlying aiortc connection (for diagnostics and tests)."""
        return self._pc

    def add_end_listener(self, listener: EndListener) -> None:
        """Call ``listener(leg)`` once when the leg ends."""
        self._listeners.append(listener)

    def add_keyframe_listener(self, listener: KeyframeListener) -> None:
        """Call ``listener(leg)`` whenever the participant needs a keyframe of its video."""
        self._keyframe_listeners.append(listener)

    def request_keyframe(self) -> None:
        """Ask the participant for a keyframe of the video it sends (rate-limited)."""
        if self._keyframes is not None and not self.ended:
            self._keyframes.request()

    def _keyframe_wanted(self) -> None:
        for listener in list(self._keyframe_listeners):
            listener(self)

    async def answer(
        self,
        offer_sdp: str,
        outbound: MediaStreamTrack,
        outbound_video: MediaStreamTrack | None = None,
    ) -> str:
        """Accept the participant's SDP offer and return the SDP answer, candidates included.

        ``outbound`` is what the participant hears, ``outbound_video`` what it sees. Audio is
        forced to the configured codec (Opus), video to VP8. The first video section of the
        offer is accepted when ``outbound_video`` is given (then an offer whose video has no
        VP8 is refused); every other section is made inactive. Raises
        :class:`InvalidArgument` for an offer without a usable audio section and
        :class:`FailedPrecondition` when the leg has already answered or ended.
        """
        if self._pc is not None or self._end_task is not None:
            raise FailedPrecondition(f"leg {self.name} has already answered or ended")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            # Made before the offer is applied, so the offer's audio section lands on this
            # transceiver, with its codec preference and its tapped receiver.
            transceiver = pc.addTransceiver(outbound, direction="sendrecv")
            self._force_codec(transceiver, self._config.audio_codec)
            self._tap = tap_receiver(transceiver.receiver, self.inbound, self._config.audio_codec)
            kept = [transceiver]
            if outbound_video is not None and _offers_video(offer_sdp):
                kept.append(self._add_video(pc, outbound_video))
            with host_addresses(self._config.host_addresses):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
                if transceiver.mid is None:
                    raise InvalidArgument(f"the offer of leg {self.name} has no audio section")
                self._sends_video = len(kept) > 1 and kept[1].mid is not None
                for other in pc.getTransceivers():
                    if other not in kept:
                        other.direction = "inactive"
                # setLocalDescription gathers every candidate before it returns.
                await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, OperationError, InternalError, InvalidStateError) as exc:
            await self.close()
            raise InvalidArgument(f"the offer of leg {self.name} is not usable: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        description = pc.localDescription
        if pc.iceGatheringState != "complete" or description is None:
            await self.close()
            raise FailedPrecondition(f"leg {self.name} could not gather its candidates")
        return description.sdp

    def _add_video(
        self, pc: RTCPeerConnection, outbound_video: MediaStreamTrack
    ) -> RTCRtpTransceiver:
        # Made before the offer is applied, like the audio one, so the offer's first video
        # section lands here; its receiver forwards, its sender reports keyframe requests.
        video = pc.addTransceiver(outbound_video, direction="sendrecv")
        self._force_codec(video, self._config.video_codec)
        self._video_tap = tap_receiver(video.receiver, self.video_inbound, self._config.video_codec)
        watch_keyframe_requests(video.sender, self._keyframe_wanted)
        self._keyframes = KeyframeRequester(video.receiver, self._config.keyframe_interval)
        self._video_tap.on_keyframe_missing = self.request_keyframe
        return video

    @staticmethod
    def _force_codec(transceiver: RTCRtpTransceiver, mime_type: str) -> None:
        wanted = mime_type.lower()
        kind = wanted.partition("/")[0]
        codecs = [
            codec
            for codec in RTCRtpSender.getCapabilities(kind).codecs
            if codec.mimeType.lower() == wanted
        ]
        if not codecs:
            raise InvalidArgument(f"aiortc has no codec {mime_type}")
        transceiver.setCodecPreferences(codecs)

    def _on_connection_state(self) -> None:
        if self._pc is None:
            return
        state = self._pc.connectionState
        if state in _ENDING_STATES:
            self._start_ending()
        elif state == "connected" and self._sends_video:
            # The sender starts reading forwarded video mid-stream: it needs a keyframe.
            self._keyframe_wanted()

    def _start_ending(self) -> asyncio.Task[None]:
        if self._end_task is None:
            self._end_task = asyncio.create_task(self._end(), name=f"media-leg-end-{self.name}")
        return self._end_task

    async def close(self) -> None:
        """End the leg (hang-up): close the connection, end :attr:`inbound`. Idempotent."""
        await self._start_ending()

    async def wait_ended(self) -> None:
        """Return once the leg has ended."""
        await self._ended.wait()

    async def _end(self) -> None:
        if self._owns_inbound:
            self.inbound.stop()
        if self._owns_video_inbound:
            self.video_inbound.stop()
        if self._keyframes is not None:
            self._keyframes.close()
        self._keyframe_listeners.clear()
        try:
            if self._pc is not None:
                # Also waits for a close aiortc started by itself (peer gone, DTLS closed).
                await self._pc.close()
        finally:
            self._ended.set()
            listeners, self._listeners = self._listeners, []
            for listener in listeners:
                listener(self)


def _offers_video(offer_sdp: str) -> bool:
    # Only then is a video transceiver made: an audio-only offer gets the audio-only leg of old.
    return any(line.startswith("m=video ") for line in offer_sdp.splitlines())
