"""Real aiortc peers with video for media tests: a VP8 test pattern and a decoded-frame check.

:class:`PatternTrack` sends pre-encoded VP8 (its own libvpx encoder, so aiortc's sender only
packetizes): a solid colour with a white bar that moves 4 pixels a frame. It makes a keyframe
at its start and then *only* when a keyframe request (PLI/FIR) reaches the peer's sender —
never because aiortc's encoder rebuilt itself on a REMB change — so a test that needs a
keyframe proves the keyframe path. :class:`VideoPeer` offers audio (Opus) and video (VP8) on
127.0.0.1; what it receives is decoded by aiortc and checked by :class:`VideoRecorder`.
"""

from __future__ import annotations

import asyncio
import random
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
from av.video.frame import PictureType

from procall.media import LOOPBACK, host_addresses
from tests.helpers.media import ToneTrack

WIDTH, HEIGHT = 160, 120  # small: the test machine is shared and the loop runs every peer
FPS = 15
VIDEO_CLOCK = 90_000
BAR = 8
BAR_Y = 235
#: Rows of fixed noise at the top: they make a keyframe span many RTP packets (about 1,200
#: bytes each), as real video does; a flat picture fits a frame in one packet.
NOISE_ROWS = HEIGHT // 2 - 8


def codecs(mime_type: str) -> list[RTCRtpCodecCapability]:
    """The one codec ``mime_type`` (``audio/opus``, ``video/VP8``), for setCodecPreferences."""
    kind = mime_type.partition("/")[0]
    return [
        codec
        for codec in RTCRtpSender.getCapabilities(kind).codecs
        if codec.mimeType.lower() == mime_type.lower()
    ]


def bar_position(index: int) -> int:
    """Where the bar of frame ``index`` starts (its left column)."""
    return (index * 4) % (WIDTH - BAR)


class PatternTrack(MediaStreamTrack):
    """Pre-encoded VP8 frames of a moving test pattern in one colour (Y, U, V), paced at FPS.

    Keyframes: the first frame, then only after :meth:`request_keyframe` (wired to the peer's
    sender by :class:`VideoPeer`, so that a PLI or FIR arriving there asks for one).
    """

    kind = "video"

    def __init__(self, colour: tuple[int, int, int]) -> None:
        super().__init__()
        self.colour = colour
        self._encoder = av.CodecContext.create("libvpx", "w")
        self._encoder.width, self._encoder.height = WIDTH, HEIGHT
        self._encoder.pix_fmt = "yuv420p"
        self._encoder.time_base = Fraction(1, VIDEO_CLOCK)
        self._encoder.framerate = Fraction(FPS, 1)
        self._encoder.bit_rate = 300_000
        self._encoder.gop_size = 1_000_000  # no keyframe unless asked
        self._encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        self._index = 0
        self._start: float | None = None
        self._pending: list[av.Packet] = []
        self._keyframe_wanted = False
        noise = random.Random(sum(colour))
        self._noise = [
            bytes(noise.randrange(16, 236) for _ in range(WIDTH)) for _ in range(NOISE_ROWS)
        ]
        #: The largest encoded frame, in bytes.
        self.largest_frame = 0
        #: Keyframe requests that reached the sender, keyframes and frames sent.
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        self.frames_sent = 0

    def request_keyframe(self) -> None:
        """A PLI or FIR reached the sender: make the next frame a keyframe."""
        self.keyframe_requests += 1
        self._keyframe_wanted = True

    def _frame(self) -> av.VideoFrame:
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane_index, value in enumerate(self.colour):
            plane = frame.planes[plane_index]
            rows = HEIGHT if plane_index == 0 else HEIGHT // 2
            row = bytearray([value]) * plane.line_size
            if plane_index == 0:
                x = bar_position(self._index)
                row[x : x + BAR] = bytes([BAR_Y]) * BAR
                padding = bytes(plane.line_size - WIDTH)
                noisy = b"".join(line + padding for line in self._noise)
                plane.update(noisy + bytes(row) * (rows - NOISE_ROWS))
            else:
                plane.update(bytes(row) * rows)
        frame.pts = self._index * VIDEO_CLOCK // FPS
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            frame.pict_type = PictureType.I
        return frame

    async def recv(self) -> av.Packet:
        loop = asyncio.get_running_loop()
        while not self._pending:
            if self._start is None:
                self._start = loop.time()
            delay = self._start + self._index / FPS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._pending.extend(self._encoder.encode(self._frame()))
            self._index += 1
        packet = self._pending.pop(0)
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        if packet.is_keyframe:
            self.keyframes_sent += 1
        self.largest_frame = max(self.largest_frame, packet.size)
        self.frames_sent += 1
        return packet


class VideoRecorder:
    """Reads a received video track until it ends: decoded frames, their colour and bar."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames = 0
        self.first_frame_at: float | None = None
        #: (Y, U, V) away from the bar and the bar's column, of each decoded frame.
        self.colours: list[tuple[int, int, int]] = []
        self.bars: list[int | None] = []
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="media-test-video-recorder")

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                if not isinstance(frame, av.VideoFrame):
                    raise TypeError(f"received {type(frame).__name__}, not video")
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                self.frames += 1
                self._inspect(frame)
        except MediaStreamError:
            pass
        finally:
            self.ended.set()

    def _inspect(self, frame: av.VideoFrame) -> None:
        if (frame.width, frame.height) != (WIDTH, HEIGHT) or frame.format.name != "yuv420p":
            self.colours.append((-1, -1, -1))
            self.bars.append(None)
            return
        luma, blue, red = frame.planes
        middle = (HEIGHT // 2) * luma.line_size
        row = bytes(luma)[middle : middle + WIDTH]
        background = sorted(row)[WIDTH // 2]
        bright = [x for x, value in enumerate(row) if value > (BAR_Y + background) // 2]
        self.bars.append(bright[0] if bright else None)
        # The bar changes luma only: chroma anywhere is the pattern's colour.
        centre = (HEIGHT // 4) * blue.line_size + WIDTH // 4
        self.colours.append((background, bytes(blue)[centre], bytes(red)[centre]))

    async def stop(self) -> None:
        """Stop reading (idempotent) and wait for the reading task to end."""
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class VideoPeer:
    """A participant's aiortc peer on 127.0.0.1 sending a tone and a VP8 pattern, or only
    receiving video (``colour=None``), recording the video it receives.

    ``mute`` governs the PLIs this peer's receiver sends of its own (aiortc sends one when its
    decoder fails or its jitter buffer sees a loss): ``"never"`` muted, ``"until_decoding"``
    (muted until the first frame is decoded, so that only the bridge can get the first
    keyframe, while a later loss still recovers as with a real client) or ``"always"``; it can
    be changed at any time.
    """

    def __init__(
        self,
        tone: float,
        colour: tuple[int, int, int] | None,
        mute: str = "never",
    ) -> None:
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        audio = self.pc.addTransceiver(ToneTrack(tone), direction="sendrecv")
        audio.setCodecPreferences(codecs("audio/opus"))
        self.pattern = PatternTrack(colour) if colour is not None else None
        if self.pattern is not None:
            video = self.pc.addTransceiver(self.pattern, direction="sendrecv")
            # aiortc's own reaction to a PLI/FIR for this sender is this method: count it.
            video.sender._send_keyframe = self.pattern.request_keyframe  # type: ignore[method-assign]
        else:
            video = self.pc.addTransceiver("video", direction="recvonly")
        video.setCodecPreferences(codecs("video/VP8"))
        self.video = video
        self.mute = mute
        self.plis_muted = 0
        self._send_pli = video.receiver._send_rtcp_pli
        video.receiver._send_rtcp_pli = self._maybe_muted_pli  # type: ignore[method-assign]
        self.recorder: VideoRecorder | None = None
        self.answered_at: float | None = None
        self.pc.on("track", self._on_track)

    async def _maybe_muted_pli(self, media_ssrc: int) -> None:
        decoding = self.recorder is not None and self.recorder.first_frame_at is not None
        if self.mute == "always" or (self.mute == "until_decoding" and not decoding):
            self.plis_muted += 1
        else:
            await self._send_pli(media_ssrc)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self.recorder = VideoRecorder(track)

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

    async def frames_seen(self, count: int, timeout: float) -> VideoRecorder:
        """Wait until ``count`` frames were decoded; raises ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.recorder is None or self.recorder.frames < count:
            if time.monotonic() > deadline:
                seen = 0 if self.recorder is None else self.recorder.frames
                raise TimeoutError(f"{seen} of {count} video frames decoded in {timeout} s")
            await asyncio.sleep(0.02)
        return self.recorder

    async def close(self) -> None:
        """Close the connection and stop recording."""
        await self.pc.close()
        if self.recorder is not None:
            await self.recorder.stop()
