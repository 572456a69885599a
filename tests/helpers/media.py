"""Real aiortc peers for media tests: a tone source, a Goertzel check and a loopback peer.

Shared by the MediaServer's bridge tests and (later) the SDK softphone: a :class:`LoopbackPeer`
offers one Opus audio section sending a :class:`ToneTrack`, gathers only 127.0.0.1 candidates,
and records what it receives so :func:`tone_power` can tell which tone it heard.
"""

from __future__ import annotations

import array
import asyncio
import math
import time
from fractions import Fraction

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

from procall.media import LOOPBACK, host_addresses

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE


class ToneTrack(MediaStreamTrack):
    """A sine tone as s16 mono 48 kHz audio frames of 960 samples, paced every 20 ms."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self._amplitude = int(amplitude * 32767)
        self._index = 0
        self._start: float | None = None
        self.frames_sent = 0

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._index * FRAME_SECONDS
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        offset = self._index * FRAME_SAMPLES
        step = 2 * math.pi * self.frequency / SAMPLE_RATE
        samples = array.array(
            "h",
            (int(self._amplitude * math.sin(step * (offset + n))) for n in range(FRAME_SAMPLES)),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.pts = offset
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = Fraction(1, SAMPLE_RATE)
        self._index += 1
        self.frames_sent += 1
        return frame


def mono_samples(frame: av.AudioFrame) -> array.array[int]:
    """The first channel of a packed s16 frame (aiortc's Opus decoder gives stereo s16)."""
    if frame.format.name != "s16":
        raise ValueError(f"expected packed s16 audio, got {frame.format.name}")
    channels = len(frame.layout.channels)
    interleaved = array.array("h", bytes(frame.planes[0])[: frame.samples * channels * 2])
    return interleaved[::channels] if channels > 1 else interleaved


def tone_power(samples: array.array[int], frequency: float, rate: int = SAMPLE_RATE) -> float:
    """Goertzel: the power of ``frequency`` in ``samples``, normalised by their length."""
    if not samples:
        return 0.0
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    power = previous * previous + before * before - coefficient * previous * before
    return power / len(samples)


class Recorder:
    """Reads a received track until it ends, keeping its samples and arrival times."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.samples: array.array[int] = array.array("h")
        self.frames = 0
        self.first_frame_at: float | None = None
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="media-test-recorder")

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                if not isinstance(frame, av.AudioFrame):
                    raise TypeError(f"received {type(frame).__name__}, not audio")
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                self.frames += 1
                self.samples.extend(mono_samples(frame))
        except MediaStreamError:
            pass
        finally:
            self.ended.set()

    def since(self, seconds_skipped: float) -> array.array[int]:
        """The samples after the first ``seconds_skipped`` (skips the codec's start-up)."""
        return self.samples[int(seconds_skipped * SAMPLE_RATE) :]

    async def stop(self) -> None:
        """Stop reading (idempotent) and wait for the reading task to end."""
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def opus_only() -> list[RTCRtpCodecCapability]:
    """Opus as the only codec, for ``setCodecPreferences``."""
    return [
        codec
        for codec in RTCRtpSender.getCapabilities("audio").codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


class TaggedPacketTrack(MediaStreamTrack):
    """Pre-encoded "audio": numbered byte strings as packets every 20 ms, send times kept.

    No decoder can read them, and any re-encoding would change them, so a far end that
    receives exactly these bytes proves the path between did neither.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._index = 0
        self._start: float | None = None
        #: payload -> monotonic time it was handed to the sender
        self.sent_at: dict[bytes, float] = {}

    async def recv(self) -> av.Packet:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index * FRAME_SECONDS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        payload = b"procall-tagged-%06d" % self._index
        packet = av.Packet(payload)
        packet.pts = self._index * FRAME_SAMPLES
        packet.time_base = Fraction(1, SAMPLE_RATE)
        self.sent_at[payload] = time.monotonic()
        self._index += 1
        return packet


class LoopbackPeer:
    """A participant's aiortc peer on 127.0.0.1 that sends a tone and records what it hears.

    ``source`` is a tone frequency, or any audio track to send instead.
    """

    def __init__(self, source: float | MediaStreamTrack) -> None:
        self.source = ToneTrack(source) if isinstance(source, float | int) else source
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        transceiver = self.pc.addTransceiver(self.source, direction="sendrecv")
        self.transceiver = transceiver
        transceiver.setCodecPreferences(opus_only())
        self.recorder: Recorder | None = None
        self.answered_at: float | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.recorder = Recorder(track)

    async def offer(self) -> str:
        """The SDP offer, with its loopback candidates."""
        with host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        """Apply the bridge's SDP answer (connecting starts)."""
        self.answered_at = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def heard(self, seconds: float) -> Recorder:
        """Wait for the first received frame, then record for ``seconds``."""
        deadline = time.monotonic() + 5
        while self.recorder is None or self.recorder.first_frame_at is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no audio received within 5 s")
            await asyncio.sleep(0.01)
        await asyncio.sleep(seconds)
        return self.recorder

    async def close(self) -> None:
        """Close the connection and stop recording."""
        await self.pc.close()
        if self.recorder is not None:
            await self.recorder.stop()
