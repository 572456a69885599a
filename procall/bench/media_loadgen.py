"""The load generator of ``procall bench media`` (run as its own process, pinned to one core).

``python -m procall.bench.media_loadgen spec.json`` places 2-party calls on one relay — the
MediaServer (legs made with ``MediaService.CreateLeg`` as a UCServer would) or a bare relay
(:mod:`procall.bench.media_relay`) — stepping up the number of concurrent calls, and prints
one JSON object with the figures of every step.

It must stay cheaper than what it measures, so it neither encodes nor decodes: each peer
sends pre-encoded Opus packets of a tone (aiortc only packetizes an ``av.Packet``) and counts
what it receives at the receiver's decoder queue (the tap the MediaServer uses, with the
same pass-through jitter buffer), without decoding. One sampled call per step decodes what
it hears and checks with Goertzel that each side heard the other's tone.

Per step, after the calls have connected and settled: frames delivered / frames sent (both
directions, counters read at the same instants), the relay process's CPU (``/proc``), the
load generator's own CPU, and p50/p99 of the inter-arrival time of received frames.
"""

from __future__ import annotations

import array
import asyncio
import json
import math
import os
import queue
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import uvloop
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from procall.bench.media_relay import relay_answer
from procall.bench.stats import percentile
from procall.media import LOOPBACK, PassThroughJitterBuffer, host_addresses
from procall.media.internals import DECODER_QUEUE_ATTRIBUTE, JITTER_BUFFER_ATTRIBUTE

__all__ = ["CALLER_HZ", "CALLEE_HZ", "encode_tone", "run_loadgen"]

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
#: The tones of the two sides of every call (a whole number of cycles per second, so one
#: second of packets loops without a click).
CALLER_HZ = 440.0
CALLEE_HZ = 880.0
#: Calls being set up at once while a step ramps up.
_SETUP_CONCURRENCY = 4
#: Seconds a call may take to connect.
_CONNECT_TIMEOUT = 20.0

#: Frames received / sent below this fail a step whatever the gaps say (silent far ends).
_MIN_RECEIVED_VS_SENT = 0.97
#: Consecutive failing steps that end a run.
_FAILURES_TO_STOP = 2
#: Larger timestamp jumps are a new source, not losses.
_MAX_GAP_FRAMES = 250

Answer = Callable[[str, str, str], Awaitable[str]]


def encode_tone(frequency: float, seconds: int = 1) -> list[bytes]:
    """``seconds`` of a ``frequency`` tone as Opus packets (mono 48 kHz, 20 ms, 32 kb/s).

    The encoder runs one extra second first, so the packets kept are in its steady state.
    """
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32_000
    encoder.options = {"frame_duration": "20", "application": "voip"}
    frames = 50 * (seconds + 1)
    step = 2 * math.pi * frequency / SAMPLE_RATE
    packets: list[bytes] = []
    for index in range(frames):
        offset = index * FRAME_SAMPLES
        samples = array.array(
            "h", (int(9000 * math.sin(step * (offset + n))) for n in range(FRAME_SAMPLES))
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.pts = offset
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = Fraction(1, SAMPLE_RATE)
        packets.extend(bytes(p) for p in encoder.encode(frame))
    return packets[-50 * seconds :]


class PacketSource(MediaStreamTrack):
    """Pre-encoded Opus packets, looped, one every 20 ms (the sender only packetizes them)."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self._packets = packets
        self._index = 0
        self._start: float | None = None
        #: Packets handed to the sender so far.
        self.sent = 0

    async def recv(self) -> Any:
        """The next packet, at its time."""
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index * FRAME_SECONDS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError
        packet = av.Packet(self._packets[self._index % len(self._packets)])
        packet.pts = self._index * FRAME_SAMPLES
        packet.time_base = Fraction(1, SAMPLE_RATE)
        self._index += 1
        self.sent += 1
        return packet


@dataclass
class _Arrivals:
    """Inter-arrival times of received frames, kept only while a step is measured."""

    recording: bool = False
    gaps: list[float] = field(default_factory=list)


class CountingTap:
    """A receiver's decoder queue that counts encoded frames and (unless ``decode``) drops them.

    With ``decode`` the frames still go on to the receiver's decoder thread (the sampled call).
    """

    def __init__(self, decoder_queue: queue.Queue[Any], arrivals: _Arrivals, decode: bool) -> None:
        self._queue = decoder_queue
        self._arrivals = arrivals
        self._decode = decode
        self._last: float | None = None
        self._timestamp: int | None = None
        #: Frames received, and frames missing between them (RTP timestamp gaps).
        self.received = 0
        self.missing = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Count one frame (``None``, the end of stream, goes to the decoder thread)."""
        if item is None or self._decode:
            self._queue.put(item, block, timeout)
        if item is None:
            return
        self.received += 1
        timestamp = item[1].timestamp
        if self._timestamp is not None:
            # the relays keep the sender's timestamps: a gap is a frame lost on the way
            gap = ((timestamp - self._timestamp) & 0xFFFFFFFF) // FRAME_SAMPLES
            if 1 < gap <= _MAX_GAP_FRAMES:
                self.missing += gap - 1
        self._timestamp = timestamp
        now = time.monotonic()
        if self._arrivals.recording and self._last is not None:
            self._arrivals.gaps.append(now - self._last)
        self._last = now

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """What the receiver's decoder thread reads."""
        return self._queue.get(block, timeout)


def _opus_only() -> list[Any]:
    return [
        codec
        for codec in RTCRtpSender.getCapabilities("audio").codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


class Peer:
    """One side of a call: sends its tone packets, counts (and maybe decodes) what it hears."""

    def __init__(self, packets: list[bytes], arrivals: _Arrivals, decode: bool) -> None:
        self.source = PacketSource(packets)
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        transceiver = self.pc.addTransceiver(self.source, direction="sendrecv")
        transceiver.setCodecPreferences(_opus_only())
        receiver = transceiver.receiver
        self.tap = CountingTap(getattr(receiver, DECODER_QUEUE_ATTRIBUTE), arrivals, decode)
        setattr(receiver, DECODER_QUEUE_ATTRIBUTE, self.tap)
        setattr(receiver, JITTER_BUFFER_ATTRIBUTE, PassThroughJitterBuffer())
        self.samples: array.array[int] = array.array("h")
        self._reader: asyncio.Task[None] | None = None
        if decode:
            self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.AudioFrame):
                    channels = len(frame.layout.channels)
                    pcm = array.array("h", bytes(frame.planes[0])[: frame.samples * channels * 2])
                    self.samples.extend(pcm[::channels])
                    del self.samples[: max(0, len(self.samples) - SAMPLE_RATE)]  # last second
        except MediaStreamError:
            pass

    async def connect(self, answer: Callable[[str], Awaitable[str]]) -> None:
        """Offer, have the relay answer, and wait until connected."""
        with host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        sdp = await answer(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        deadline = time.monotonic() + _CONNECT_TIMEOUT
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise RuntimeError(f"a peer did not connect ({self.pc.connectionState})")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Close the connection."""
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


def tone_power(samples: array.array[int], frequency: float) -> float:
    """Goertzel: the power of ``frequency`` in ``samples``, normalised by their length."""
    if not samples:
        return 0.0
    coefficient = 2 * math.cos(2 * math.pi * frequency / SAMPLE_RATE)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    power = previous * previous + before * before - coefficient * previous * before
    return power / len(samples)


def _heard(peer: Peer, wanted: float, own: float) -> bool:
    samples = peer.samples
    return len(samples) > SAMPLE_RATE // 2 and tone_power(samples, wanted) > 100 * tone_power(
        samples, own
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_seconds(pid: int) -> float:
    """Seconds the threads of process ``pid`` have waited for a core while runnable
    (``/proc/<pid>/task/*/schedstat``): time other processes took from it."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                total += int(stat.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total / 1e9


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _procall_answerer(spec: dict[str, Any]) -> tuple[Answer, Callable[[], Awaitable[None]]]:
    from procall.mesh.media.v1 import media_service_pb2 as media_pb
    from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
    from procall.servers.runtime.channels import calling_channel, proofs_for
    from procall.servers.runtime.identity import ProofSigner

    # the bench plays the UCServer, the only role the MediaService serves
    signer = ProofSigner(spec["credential"], "ucserver", "bench-media-loadgen")
    channel = calling_channel(spec["address"], extra=proofs_for(signer, spec["server_id"]))
    stub = media_grpc.MediaServiceStub(channel)

    async def answer(bridge: str, user: str, offer: str) -> str:
        reply = await stub.CreateLeg(
            media_pb.CreateLegRequest(bridge_id=bridge, user_id=user, sdp_offer=offer),
            timeout=_CONNECT_TIMEOUT,
        )
        return str(reply.sdp_answer)

    async def close() -> None:
        await channel.close()

    return answer, close


def _relay_answerer(spec: dict[str, Any]) -> tuple[Answer, Callable[[], Awaitable[None]]]:
    port = int(spec["port"])

    async def answer(bridge: str, user: str, offer: str) -> str:
        return await relay_answer(port, bridge, offer)

    async def close() -> None:
        return None

    return answer, close


@dataclass
class _Call:
    caller: Peer
    callee: Peer


async def _place(
    index: int,
    answer: Answer,
    tones: tuple[list[bytes], list[bytes]],
    arrivals: _Arrivals,
    decode: bool,
) -> _Call:
    bridge = f"bench-{index:05d}"
    call = _Call(Peer(tones[0], arrivals, decode), Peer(tones[1], arrivals, decode))
    await call.caller.connect(lambda offer: answer(bridge, "caller", offer))
    await call.callee.connect(lambda offer: answer(bridge, "callee", offer))
    return call


async def _measure(
    calls: list[_Call], arrivals: _Arrivals, pid: int, seconds: float
) -> dict[str, Any]:
    def counters() -> tuple[int, int, int]:
        sent = received = missing = 0
        for call in calls:
            for peer in (call.caller, call.callee):
                sent += peer.source.sent
                received += peer.tap.received
                missing += peer.tap.missing
        return sent, received, missing

    arrivals.gaps.clear()
    arrivals.recording = True
    sent0, received0, missing0 = counters()
    me = os.getpid()
    waits0 = _wait_seconds(pid), _wait_seconds(me)
    cpu0, own0, wall0 = _cpu_seconds(pid), _own_cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    sent1, received1, missing1 = counters()
    cpu1, own1, wall1 = _cpu_seconds(pid), _own_cpu_seconds(), time.monotonic()
    waits1 = _wait_seconds(pid), _wait_seconds(me)
    arrivals.recording = False
    wall = wall1 - wall0
    sent, received, missing = sent1 - sent0, received1 - received0, missing1 - missing0
    expected = 2 * len(calls) * wall / FRAME_SECONDS
    gaps_ms = [gap * 1000 for gap in arrivals.gaps]
    relay_cpu = (cpu1 - cpu0) / wall
    return {
        "calls": len(calls),
        "frames_sent": sent,
        "frames_received": received,
        "frames_missing": missing,
        # frames received / (received + lost on the way): unaffected by frames in flight
        "delivered": round(received / (received + missing), 4) if received else 0.0,
        # frames received / frames sent in the same window (in-flight frames blur it a bit;
        # a far end that hears nothing at all shows here)
        "received_vs_sent": round(received / sent, 4) if sent else 0.0,
        # what the load generator managed to send of the nominal 50 frames/s per direction
        "offered": round(sent / expected, 4) if expected else 0.0,
        "relay_cpu": round(relay_cpu, 4),
        "relay_cpu_per_call": round(relay_cpu / len(calls), 5) if calls else 0.0,
        "loadgen_cpu": round((own1 - own0) / wall, 4),
        # runnable but waiting for a core (other processes on a shared machine, or itself)
        "relay_wait": round((waits1[0] - waits0[0]) / wall, 4),
        "loadgen_wait": round((waits1[1] - waits0[1]) / wall, 4),
        "interarrival_p50_ms": round(percentile(gaps_ms, 0.50), 2),
        "interarrival_p99_ms": round(percentile(gaps_ms, 0.99), 2),
    }


def _passes(step: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether a step carried its calls (see :mod:`procall.bench.media`)."""
    return bool(
        step["delivered"] >= spec["min_delivered"]
        and step["received_vs_sent"] >= _MIN_RECEIVED_VS_SENT
        and step["relay_cpu"] < spec["max_cpu"]
        and step["tone_ok"]
    )


async def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """Step the calls up as ``spec`` says; returns ``{"steps": [...], "stopped": reason}``."""
    if spec["target"] == "procall":
        answer, close = _procall_answerer(spec)
    else:
        answer, close = _relay_answerer(spec)
    tones = (encode_tone(CALLER_HZ), encode_tone(CALLEE_HZ))
    arrivals = _Arrivals()
    calls: list[_Call] = []
    steps: list[dict[str, Any]] = []
    stopped = "last step reached"
    gate = asyncio.Semaphore(_SETUP_CONCURRENCY)
    failures = 0

    async def place(index: int) -> _Call:
        async with gate:
            return await _place(index, answer, tones, arrivals, decode=index == 0)

    try:
        for target in spec["steps"]:
            started = time.monotonic()
            try:
                calls.extend(await asyncio.gather(*(place(i) for i in range(len(calls), target))))
            except Exception as exc:
                stopped = f"setting up {target} calls failed: {exc}"
                break
            setup_s = time.monotonic() - started
            await asyncio.sleep(spec["settle"])
            step = await _measure(calls, arrivals, spec["pid"], spec["seconds"])
            step["setup_s"] = round(setup_s, 2)
            sampled = calls[0]
            step["tone_ok"] = _heard(sampled.caller, CALLEE_HZ, CALLER_HZ) and _heard(
                sampled.callee, CALLER_HZ, CALLEE_HZ
            )
            steps.append(step)
            print(
                f"{time.strftime('%H:%M:%S')} bench media: {step['calls']} calls, "
                f"delivered {step['delivered']:.2%}, relay cpu {step['relay_cpu']:.0%}, "
                f"load generator cpu {step['loadgen_cpu']:.0%}",
                file=sys.stderr,
                flush=True,
            )
            failures = 0 if _passes(step, spec) else failures + 1
            # one failing step may be a burst of other work on a shared machine: go on once
            if failures >= _FAILURES_TO_STOP:
                stopped = f"limit reached at {target} calls"
                break
    finally:
        await asyncio.gather(
            *(peer.close() for call in calls for peer in (call.caller, call.callee)),
            return_exceptions=True,
        )
        await close()
    return {"steps": steps, "stopped": stopped}


def main() -> None:
    """Read the spec file named on the command line and print the result as one JSON line."""
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    if spec.get("core") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(spec["core"])})
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run_loadgen(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
