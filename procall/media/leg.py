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

__all__ = ["EndListener", "Leg"]

#: Called once when a leg has ended (on the event loop, must not block).
EndListener = Callable[["Leg"], None]

_ENDING_STATES = frozenset({"failed", "closed"})


class Leg:
    """One ``RTCPeerConnection`` with one participant, answering the participant's offer.

    The participant's audio is not decoded: its receiver forwards encoded packets to
    :attr:`inbound`, which a bridge gives to another leg as that leg's outgoing track. The leg
    ends on :meth:`close`, or by itself when its connection fails or is closed by the peer;
    then :attr:`inbound` ends and the end listeners are called once.

    ``inbound`` may be given by the leg's owner (a bridge whose other leg's sender reads it
    before this leg exists); the owner then ends it, the leg leaves it live when it ends.
    """

    def __init__(
        self, name: str, config: MediaConfig, inbound: ForwardedTrack | None = None
    ) -> None:
        self.name = name
        self._config = config
        self._owns_inbound = inbound is None
        #: The participant's audio, still encoded, for another leg's sender.
        self.inbound = inbound or ForwardedTrack(max_packets=config.queue_packets)
        self._pc: RTCPeerConnection | None = None
        self._tap: PacketTap | None = None
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
    def peer_connection(self) -> RTCPeerConnection | None:
        """The underlying aiortc connection (for diagnostics and tests)."""
        return self._pc

    def add_end_listener(self, listener: EndListener) -> None:
        """Call ``listener(leg)`` once when the leg ends."""
        self._listeners.append(listener)

    async def answer(self, offer_sdp: str, outbound: MediaStreamTrack) -> str:
        """Accept the participant's SDP offer and return the SDP answer, candidates included.

        ``outbound`` is what the participant hears. Audio is forced to the configured codec
        (Opus). Raises :class:`InvalidArgument` for an offer without a usable audio section and
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
            self._force_codec(transceiver)
            self._tap = tap_receiver(transceiver.receiver, self.inbound, self._config.audio_codec)
            with host_addresses(self._config.host_addresses):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
                if transceiver.mid is None:
                    raise InvalidArgument(f"the offer of leg {self.name} has no audio section")
                for other in pc.getTransceivers():
                    if other is not transceiver:
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

    def _force_codec(self, transceiver: RTCRtpTransceiver) -> None:
        wanted = self._config.audio_codec.lower()
        codecs = [
            codec
            for codec in RTCRtpSender.getCapabilities("audio").codecs
            if codec.mimeType.lower() == wanted
        ]
        if not codecs:
            raise InvalidArgument(f"aiortc has no codec {self._config.audio_codec}")
        transceiver.setCodecPreferences(codecs)

    def _on_connection_state(self) -> None:
        if self._pc is not None and self._pc.connectionState in _ENDING_STATES:
            self._start_ending()

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
        try:
            if self._pc is not None:
                # Also waits for a close aiortc started by itself (peer gone, DTLS closed).
                await self._pc.close()
        finally:
            self._ended.set()
            listeners, self._listeners = self._listeners, []
            for listener in listeners:
                listener(self)
