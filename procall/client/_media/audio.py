"""Audio for the softphone: what it sends (a tone, a WAV file, silence) and what it keeps of
what it receives (a bounded in-memory tail and, if asked, a WAV file written as it comes).

Sources make one aiortc track per peer connection (a re-anchored call gets a fresh one);
tracks return 20 ms ``av.AudioFrame``s paced in real time. aiortc's Opus encoder resamples,
so a WAV file of any rate works; received audio is Opus decoded to 48 kHz.
"""

from __future__ import annotations

import array
import asyncio
import math
import time
import wave
from fractions import Fraction
from pathlib import Path

import av
from aiortc.mediastreams import MediaStreamTrack

__all__ = ["SAMPLE_RATE", "AudioSource", "Recording", "ToneSource", "WavSource"]

#: The rate of received audio (Opus decodes to 48 kHz) and of the tone and the recording.
SAMPLE_RATE = 48_000
_FRAME_SECONDS = 0.02


class _PacedTrack(MediaStreamTrack):
    """An audio track that returns one frame every 20 ms (``_samples`` makes its content)."""

    kind = "audio"

    def __init__(self, rate: int, channels: int) -> None:
        super().__init__()
        self._rate = rate
        self._channels = channels
        self._per_frame = int(rate * _FRAME_SECONDS)
        self._index = 0
        self._start: float | None = None

    def _samples(self, offset: int, count: int) -> bytes:
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        """The next frame, on time."""
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index * _FRAME_SECONDS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        offset = self._index * self._per_frame
        layout = "mono" if self._channels == 1 else "stereo"
        frame = av.AudioFrame(format="s16", layout=layout, samples=self._per_frame)
        frame.planes[0].update(self._samples(offset, self._per_frame))
        frame.pts = offset
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        self._index += 1
        return frame


class _ToneTrack(_PacedTrack):
    def __init__(self, frequency: float, amplitude: float) -> None:
        super().__init__(SAMPLE_RATE, 1)
        self._step = 2 * math.pi * frequency / SAMPLE_RATE
        self._amplitude = int(max(0.0, min(1.0, amplitude)) * 32767)

    def _samples(self, offset: int, count: int) -> bytes:
        if not self._amplitude:
            return bytes(2 * count)
        step, amplitude = self._step, self._amplitude
        values = (int(amplitude * math.sin(step * (offset + n))) for n in range(count))
        return array.array("h", values).tobytes()


class _WavTrack(_PacedTrack):
    def __init__(self, path: Path, loop: bool) -> None:
        self._reader = wave.open(str(path), "rb")  # closed in stop()
        super().__init__(self._reader.getframerate(), self._reader.getnchannels())
        self._repeat = loop

    def _samples(self, offset: int, count: int) -> bytes:
        wanted = count * 2 * self._channels
        data = self._reader.readframes(count)
        if len(data) < wanted and self._repeat and self._reader.getnframes():
            self._reader.rewind()
            data += self._reader.readframes(count - len(data) // (2 * self._channels))
        return data + bytes(wanted - len(data))  # silence once a file without loop is over

    def stop(self) -> None:
        """End the track and close the file."""
        super().stop()
        self._reader.close()


class AudioSource:
    """What a softphone sends; ``track()`` makes the track of one peer connection."""

    def track(self) -> MediaStreamTrack:
        """A new, paced audio track."""
        raise NotImplementedError

    def describe(self) -> str:
        """A few words for people (``440 Hz tone``)."""
        raise NotImplementedError


class ToneSource(AudioSource):
    """A sine tone of ``frequency`` Hz (``amplitude`` 0..1 of full scale); 0 Hz is silence."""

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        if not 0 <= frequency < SAMPLE_RATE / 2:
            raise ValueError(f"tone frequency must be in 0..{SAMPLE_RATE // 2} Hz: {frequency}")
        self.frequency = frequency
        self.amplitude = amplitude if frequency else 0.0

    def track(self) -> MediaStreamTrack:
        """A new tone track."""
        return _ToneTrack(self.frequency, self.amplitude)

    def describe(self) -> str:
        """``440 Hz tone`` or ``silence``."""
        return f"{self.frequency:g} Hz tone" if self.frequency else "silence"


class WavSource(AudioSource):
    """A 16-bit PCM WAV file (mono or stereo, any rate), played in a loop unless ``loop``
    is False (then silence follows). The file is checked here: ``ValueError`` if unusable."""

    def __init__(self, path: str | Path, *, loop: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop
        try:
            with wave.open(str(self.path), "rb") as reader:
                width, channels = reader.getsampwidth(), reader.getnchannels()
        except (OSError, EOFError, wave.Error) as exc:
            raise ValueError(f"cannot read {self.path} as a WAV file: {exc}") from None
        if width != 2 or channels not in (1, 2):
            raise ValueError(
                f"{self.path}: need 16-bit mono or stereo PCM, got {8 * width}-bit "
                f"with {channels} channel(s)"
            )

    def track(self) -> MediaStreamTrack:
        """A new track reading the file from its start."""
        return _WavTrack(self.path, self.loop)

    def describe(self) -> str:
        """``<path>``."""
        return str(self.path)


class Recording:
    """What a softphone received: mono 48 kHz samples, the newest ``keep_seconds`` kept in
    memory, everything streamed to a WAV file when ``path`` is given."""

    def __init__(self, path: str | Path | None = None, keep_seconds: float = 60.0) -> None:
        self.path = Path(path) if path is not None else None
        self._keep = max(1, int(keep_seconds * SAMPLE_RATE))
        self._samples: array.array[int] = array.array("h")
        self.frames = 0
        #: ``time.monotonic()`` of the first frame received (None until then).
        self.first_audio_at: float | None = None
        self._writer: wave.Wave_write | None = None
        if self.path is not None:
            self._writer = wave.open(str(self.path), "wb")  # closed in close()
            self._writer.setnchannels(1)
            self._writer.setsampwidth(2)
            self._writer.setframerate(SAMPLE_RATE)

    def add(self, frame: av.AudioFrame) -> None:
        """Keep one received frame (packed s16, any channel count; the first channel)."""
        if frame.format.name != "s16":
            frame = _to_s16(frame)
        channels = len(frame.layout.channels)
        interleaved = array.array("h", bytes(frame.planes[0])[: frame.samples * channels * 2])
        mono = interleaved[::channels] if channels > 1 else interleaved
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        self.frames += 1
        self._samples.extend(mono)
        if len(self._samples) > self._keep + SAMPLE_RATE:  # trim in one-second steps
            del self._samples[: len(self._samples) - self._keep]
        if self._writer is not None:
            self._writer.writeframesraw(mono.tobytes())

    @property
    def samples(self) -> array.array[int]:
        """The samples kept in memory (the newest ``keep_seconds``, a little more at most)."""
        return self._samples

    def recent(self, seconds: float) -> array.array[int]:
        """The newest ``seconds`` of samples."""
        return self._samples[-max(1, int(seconds * SAMPLE_RATE)) :]

    def close(self) -> None:
        """Finish the WAV file (its header gets the final length); idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


def _to_s16(frame: av.AudioFrame) -> av.AudioFrame:
    resampler = av.AudioResampler(format="s16", layout=frame.layout.name, rate=frame.sample_rate)
    (converted,) = resampler.resample(frame)
    return converted
