"""``Softphone``: one call's media for a ``ProcallClient``, on an aiortc peer connection.

::

    call = await client.place_call(bob_id)
    phone = Softphone(client, source=ToneSource(440), record_to="heard.wav")
    await phone.start(call.call_id)          # offer -> negotiate_media -> answer applied
    async for event in client.events():
        phone.on_event(event)                # follows the call: re-anchors, ends
        if phone.ended.is_set():
            break
    await phone.stop()

The SDK has one event consumer (``client.events()``), the application's loop; the softphone
does not read the stream itself but is fed by that loop through ``on_event``. A
``CallChanged`` of its call that names another ``media_server_id`` means the MediaServer
carrying the call failed and the call moved: the softphone closes its peer connection,
builds a new one and negotiates again (re-anchoring), by itself. ``ended`` makes it close.

Peer connections follow procall's rules for aiortc: no ICE servers at all (aiortc's default
is a public STUN server), bundled, Opus only; ``host_addresses`` limits the ICE host
candidates (``procall.media.LOOPBACK`` in tests, so that no packet leaves loopback).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from procall.client._errors import ProcallClientError
from procall.client._events import CallChanged, ClientEvent
from procall.client._media.audio import AudioSource, Recording, ToneSource
from procall.client._models import Call
from procall.media.ice import host_addresses as chosen_host_addresses

__all__ = ["MediaNegotiator", "Softphone"]

_log = logging.getLogger(__name__)


class MediaNegotiator(Protocol):
    """What the softphone needs of the client (``ProcallClient`` has both)."""

    def negotiate_media(self, call_id: str, sdp_offer: str) -> Awaitable[tuple[str, str]]:
        """``(sdp_answer, media_server_id)`` for an SDP offer."""
        ...

    def get_call(self, call_id: str) -> Awaitable[Call]:
        """The call as the servers see it now."""
        ...


def _opus_only() -> list[RTCRtpCodecCapability]:
    return [
        codec
        for codec in RTCRtpSender.getCapabilities("audio").codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


class _Connection:
    """One peer connection of the softphone: sends the source, records into the recording."""

    def __init__(self, source: AudioSource, recording: Recording) -> None:
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.track = source.track()
        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        transceiver.setCodecPreferences(_opus_only())
        self.recording = recording
        self.first_audio_at: float | None = None
        self.has_audio = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._readers.append(asyncio.create_task(self._read(track), name="softphone-rx"))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                self.recording.add(frame)
                if self.first_audio_at is None:
                    self.first_audio_at = time.monotonic()
                    self.has_audio.set()

    async def offer(self, hosts: Sequence[str] | None) -> str:
        # ICE gathering happens in setLocalDescription: that is where the hosts apply
        with chosen_host_addresses(hosts):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        return self.pc.localDescription.sdp

    async def accept(self, sdp_answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp_answer, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        self.track.stop()
        for reader in self._readers:
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader


class Softphone:
    """The media of one call for this client (see the module doc).

    ``source`` is what it sends (``ToneSource``, ``WavSource``; ``None`` sends silence);
    ``record_to`` a WAV file that receives what it hears (mono, 48 kHz, 16-bit); the
    newest ``keep_seconds`` are also kept in memory (``samples``). ``host_addresses``
    limits the ICE host candidates (``None``: every interface but loopback).
    ``reanchor_timeout`` bounds the retries of a negotiation after the call moved.
    """

    def __init__(
        self,
        client: MediaNegotiator,
        source: AudioSource | None = None,
        record_to: str | Path | None = None,
        host_addresses: Sequence[str] | None = None,
        *,
        keep_seconds: float = 60.0,
        reanchor_timeout: float = 15.0,
    ) -> None:
        self.client = client
        self.source = source if source is not None else ToneSource(0)
        self.record_to = Path(record_to) if record_to is not None else None
        self.host_addresses = tuple(host_addresses) if host_addresses is not None else None
        self.keep_seconds = keep_seconds
        self.reanchor_timeout = reanchor_timeout
        self.call_id = ""
        #: The MediaServer the current peer connection is negotiated with.
        self.media_server_id = ""
        #: How many times media was negotiated (1 after ``start``, +1 per re-anchoring).
        self.negotiations = 0
        #: Set when the call ended (``end_reason`` says why) or ``stop`` was called.
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.recording: Recording | None = None
        self._connection: _Connection | None = None
        self._target = ""  # the MediaServer the call is on, as the last event said
        self._reanchoring: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._seen_while_starting = ""
        self._stopped = False

    # -- what it heard ------------------------------------------------------------------

    @property
    def first_audio_at(self) -> float | None:
        """``time.monotonic()`` of the first audio frame received (None until then)."""
        return self.recording.first_audio_at if self.recording else None

    @property
    def audio_at(self) -> float | None:
        """When audio first arrived on the current peer connection (None until it has:
        after a re-anchoring this is None again until the new connection delivers)."""
        return self._connection.first_audio_at if self._connection else None

    @property
    def samples(self) -> array.array[int]:
        """What it heard: mono 48 kHz samples, the newest ``keep_seconds``."""
        return self.recording.samples if self.recording else array.array("h")

    def recent(self, seconds: float) -> array.array[int]:
        """The newest ``seconds`` of what it heard."""
        return self.recording.recent(seconds) if self.recording else array.array("h")

    async def wait_for_audio(self, timeout: float = 5.0) -> None:
        """Wait until the current peer connection receives audio (``TimeoutError``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            connection = self._connection
            if connection is not None and connection.has_audio.is_set():
                return
            if loop.time() >= deadline:
                raise TimeoutError(f"no audio on call {self.call_id} within {timeout:g} s")
            if connection is None:
                await asyncio.sleep(0.02)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    connection.has_audio.wait(), min(0.2, deadline - loop.time())
                )

    # -- life -----------------------------------------------------------------------------

    async def start(self, call_id: str) -> str:
        """Build the peer connection and negotiate it for ``call_id``; returns the
        MediaServer's id. Raises ``ProcallClientError`` when the server refuses (the callee
        must answer first, from this session)."""
        if self._stopped or self.recording is not None:
            raise RuntimeError("a Softphone is started once")
        self.call_id = call_id
        self.recording = Recording(self.record_to, self.keep_seconds)
        try:
            await self._connect()
        except BaseException:
            await self.stop()
            raise
        if self._seen_while_starting not in ("", self.media_server_id):
            # the call moved while this negotiated; the event may also have been older than
            # the answer: the servers say which is right
            self._reanchoring = asyncio.create_task(self._check_anchor(), name="softphone-check")
        return self.media_server_id

    async def _check_anchor(self) -> None:
        try:
            call = await self.client.get_call(self.call_id)
        except ProcallClientError:
            return
        if call.media_server_id and call.media_server_id != self._target and not call.ended:
            self._target = call.media_server_id
            await self._reanchor()

    async def _connect(self) -> None:
        assert self.recording is not None
        connection = _Connection(self.source, self.recording)
        try:
            offer = await connection.offer(self.host_addresses)
            answer, media_server_id = await self.client.negotiate_media(self.call_id, offer)
            await connection.accept(answer)
        except BaseException:
            await connection.close()
            raise
        if self._stopped:  # the call ended while this negotiated
            await connection.close()
            return
        previous, self._connection = self._connection, connection
        self.media_server_id = self._target = media_server_id
        self.negotiations += 1
        if previous is not None:
            await previous.close()

    def on_event(self, event: ClientEvent) -> None:
        """Feed an event of the client's stream (others than this call's are ignored)."""
        if not isinstance(event, CallChanged) or event.call_id != self.call_id or self._stopped:
            return
        if event.state == "ended":
            self.end_reason = event.end_reason
            self.ended.set()
            if self._closing is None:
                self._closing = asyncio.create_task(self.stop(), name="softphone-stop")
        elif not self.negotiations:
            self._seen_while_starting = event.media_server_id or self._seen_while_starting
        elif event.media_server_id and event.media_server_id != self._target:
            self._target = event.media_server_id
            if self._reanchoring is not None:
                self._reanchoring.cancel()
            self._reanchoring = asyncio.create_task(self._reanchor(), name="softphone-reanchor")

    async def _reanchor(self) -> None:
        """A new peer connection with the call's new MediaServer (retried while the servers
        are still settling the move)."""
        if self._connection is not None:  # the old server is gone: stop sending to it now
            old, self._connection = self._connection, None
            await old.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reanchor_timeout
        delay = 0.1
        while not self._stopped:
            try:
                await self._connect()
                return
            except ProcallClientError as error:
                if error.code.name == "NOT_FOUND" or loop.time() + delay > deadline:
                    _log.warning("call %s: no new media: %s", self.call_id, error)
                    return  # the call is gone; its ENDED event stops the softphone
            except Exception:  # aiortc trouble: a fresh connection may fare better
                if loop.time() + delay > deadline:
                    _log.exception("call %s: re-anchoring failed", self.call_id)
                    return
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def stop(self) -> None:
        """Close the peer connection and finish the recording; idempotent."""
        self._stopped = True
        self.ended.set()
        task, self._reanchoring = self._reanchoring, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        if self.recording is not None:
            self.recording.close()

    async def __aenter__(self) -> Softphone:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
