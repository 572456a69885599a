"""The load generator of ``procall bench calls``: a separate process holding the softphones.

``python -m procall.bench.calls_loadgen SPEC.json`` logs in every caller (homed on
ucserver-1) and every callee (homed on ucserver-2) on its home UCServer, opens their
``Connect`` streams (acking events the way the SDK does) and then runs, in this order:

1. **Sequential calls with media** (``calls`` of them, one at a time, pairs taken in turn):
   the caller places the call; as soon as ``PlaceCall`` answers it negotiates its aiortc
   peer with the call's MediaServer while the call rings; the callee answers on the RINGING
   ``CallChanged`` of its stream, then negotiates its own peer; both peers send pre-encoded
   Opus packets and read what they receive through aiortc's ordinary receiver (jitter
   buffer and decoder, as a softphone does); when both heard their first frame the caller
   hangs up and the callee's stream reports the call ENDED.
2. **Concurrent set-ups without media**: ``concurrency`` pairs at once, each placing,
   ringing, answering, connecting and hanging up again and again until ``setups`` set-ups
   are done: set-ups per second, the ringing latency under that load, the CPU each server
   spent per set-up.
3. **The baseline**: bare grpc.aio unary round trips against an echo server in a child
   process (:func:`procall.bench.baseline.measure_unary`), as many as the sequential phase
   made unary calls, and groups of three (the unary calls of a set-up without media) one at
   a time and with the same concurrency.

All times are read from one monotonic clock in this process (both ends of every call are
here). It prints one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import uvloop
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from procall.api.call.v1 import call_pb2
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.bench.baseline import measure_unary
from procall.bench.media_loadgen import CALLEE_HZ, CALLER_HZ, PacketSource, encode_tone
from procall.bench.stats import percentile
from procall.client import ClientOptions
from procall.media import LOOPBACK, host_addresses

__all__ = ["SETUP_UNARY_CALLS", "UNARY_CALLS_WITH_MEDIA", "main", "run"]

RINGING = call_pb2.CALL_STATE_RINGING
CONNECTED = call_pb2.CALL_STATE_CONNECTED
ENDED = call_pb2.CALL_STATE_ENDED
#: Ack like the SDK does by default.
ACK_EVERY = ClientOptions().ack_every
ACK_INTERVAL = ClientOptions().ack_interval
#: The unary calls of one set-up without media (PlaceCall, AnswerCall, HangUp) and with it
#: (plus one NegotiateMedia per party).
SETUP_UNARY_CALLS = 3
UNARY_CALLS_WITH_MEDIA = 5
#: Seconds a unary call, an awaited event or a first audio frame may take.
_TIMEOUT = 20.0
#: Calls with media before the measurement (connections, caches, the peer mesh).
_WARMUP_CALLS = 3


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} calls-loadgen: {message}", file=sys.stderr, flush=True)


def _now() -> float:
    return time.perf_counter()


@dataclass(eq=False)
class _Party:
    """One logged-on softphone: its stubs and what its Connect stream reported."""

    username: str
    user_id: str
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...] = ()
    last_sequence: int = 0
    acked: int = 0
    ack_now: asyncio.Event = field(default_factory=asyncio.Event)
    #: call id -> state -> when its CallChanged arrived (the first time)
    seen: dict[str, dict[int, float]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def calls(self) -> call_grpc.CallServiceAsyncStub:
        return call_grpc.CallServiceStub(self.channel)

    async def state_at(self, call_id: str, state: int) -> float:
        """When this party's stream reported ``call_id`` in ``state`` (waits for it)."""
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: state in self.seen.get(call_id, {})), _TIMEOUT
            )
        return self.seen[call_id][state]

    async def note(self, call: call_pb2.Call, at: float) -> None:
        self.seen.setdefault(call.call_id, {}).setdefault(call.state, at)
        async with self.changed:
            self.changed.notify_all()


def _events(reply: session_pb.ConnectResponse) -> list[session_pb2.Event]:
    if reply.HasField("event"):
        return [reply.event, *reply.events]
    return list(reply.events)


async def _listen(party: _Party, ready: asyncio.Event) -> None:
    call = session_grpc.SessionServiceStub(party.channel).Connect(metadata=party.metadata)
    await call.write(
        session_pb.ConnectRequest(open=session_pb.OpenStream(accept_event_batches=True))
    )
    acks = asyncio.create_task(_ack(call, party))
    try:
        async for reply in call:
            now = _now()
            ready.set()
            for event in _events(reply):
                if event.sequence:
                    party.last_sequence = event.sequence
                if event.WhichOneof("payload") == "call_changed":
                    await party.note(event.call_changed.call, now)
            if party.last_sequence - party.acked >= ACK_EVERY:
                party.ack_now.set()
    finally:
        acks.cancel()


async def _ack(
    call: grpc.aio.StreamStreamCall[session_pb.ConnectRequest, session_pb.ConnectResponse],
    party: _Party,
) -> None:
    while True:
        try:
            await asyncio.wait_for(party.ack_now.wait(), ACK_INTERVAL)
        except TimeoutError:
            pass
        party.ack_now.clear()
        if party.last_sequence > party.acked:
            party.acked = party.last_sequence
            await call.write(session_pb.ConnectRequest(ack=session_pb.Ack(sequence=party.acked)))


class _Peer:
    """A softphone's aiortc peer: sends tone packets, notes when its first frame arrived."""

    def __init__(self, packets: list[bytes]) -> None:
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        transceiver = self.pc.addTransceiver(PacketSource(packets), direction="sendrecv")
        transceiver.setCodecPreferences(
            [
                codec
                for codec in RTCRtpSender.getCapabilities("audio").codecs
                if codec.mimeType.lower() == "audio/opus"
            ]
        )
        self.first_frame_at: float | None = None
        self.heard = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()  # decoded, as a softphone plays it
                if self.first_frame_at is None:
                    self.first_frame_at = _now()
                    self.heard.set()
        except MediaStreamError:
            pass

    async def negotiate(self, party: _Party, call_id: str) -> None:
        """Offer (loopback candidates only), have the call's MediaServer answer, apply it."""
        with host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        reply = await party.calls.NegotiateMedia(
            call_pb.NegotiateMediaRequest(call_id=call_id, sdp_offer=self.pc.localDescription.sdp),
            metadata=party.metadata,
            timeout=_TIMEOUT,
        )
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=reply.sdp_answer, type="answer")
        )

    async def first_frame(self) -> float:
        await asyncio.wait_for(self.heard.wait(), _TIMEOUT)
        assert self.first_frame_at is not None
        return self.first_frame_at

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


@dataclass
class _Tones:
    caller: list[bytes]
    callee: list[bytes]


async def _one_call(caller: _Party, callee: _Party, tones: _Tones | None) -> dict[str, float]:
    """One call from place to ended; the times of its steps (seconds from the place)."""
    peers = (_Peer(tones.caller), _Peer(tones.callee)) if tones is not None else None
    try:
        begun = _now()
        placed = await caller.calls.PlaceCall(
            call_pb.PlaceCallRequest(callee_user_id=callee.user_id),
            metadata=caller.metadata,
            timeout=_TIMEOUT,
        )
        placed_at = _now()
        call_id = placed.call.call_id
        negotiating = (
            asyncio.create_task(peers[0].negotiate(caller, call_id)) if peers is not None else None
        )
        ringing_at = await callee.state_at(call_id, RINGING)
        answer_sent = _now()
        await callee.calls.AnswerCall(
            call_pb.AnswerCallRequest(call_id=call_id), metadata=callee.metadata, timeout=_TIMEOUT
        )
        answered_at = _now()
        if peers is not None:
            await peers[1].negotiate(callee, call_id)
        negotiated_at = _now()
        connected_at = await caller.state_at(call_id, CONNECTED)
        times = {
            "place": placed_at - begun,
            "ringing": ringing_at - begun,
            "answer": answered_at - answer_sent,
            "answer_to_connected": connected_at - answer_sent,
        }
        if peers is not None and negotiating is not None:
            await negotiating
            at_caller, at_callee = await asyncio.gather(
                peers[0].first_frame(), peers[1].first_frame()
            )
            times["callee_negotiate"] = negotiated_at - answered_at
            times["first_audio_caller"] = at_caller - answer_sent
            times["first_audio_callee"] = at_callee - answer_sent
            times["first_audio"] = max(at_caller, at_callee) - answer_sent
            times["place_to_first_audio"] = max(at_caller, at_callee) - begun
        hang_up = _now()
        await caller.calls.HangUp(
            call_pb.HangUpRequest(call_id=call_id), metadata=caller.metadata, timeout=_TIMEOUT
        )
        times["hangup_to_ended"] = await callee.state_at(call_id, ENDED) - hang_up
        times["setup"] = connected_at - begun
        caller.seen.pop(call_id, None)
        callee.seen.pop(call_id, None)
        return times
    finally:
        if peers is not None:
            for peer in peers:
                await peer.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far; 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _CpuMeter:
    """CPU seconds of the topology's processes (and this one) between two instants."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._before = self._read()

    def _read(self) -> dict[str, float]:
        used = {name: _cpu_seconds(pid) for name, pid in self._pids.items()}
        used["loadgen"] = _own_cpu_seconds()
        return used

    def per(self, count: int) -> dict[str, float]:
        """Milliseconds of CPU per one of ``count`` things done since the meter started."""
        after = self._read()
        return {
            name: round(1000 * (after[name] - self._before[name]) / max(1, count), 2)
            for name in after
        }


def _ms(samples: list[float], fraction: float) -> float:
    return round(percentile(samples, fraction) * 1000, 2)


def _figures(prefix: str, samples: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": _ms(samples, 0.50),
        f"{prefix}_p99_ms": _ms(samples, 0.99),
        f"{prefix}_max_ms": round(max(samples, default=0.0) * 1000, 2),
    }


class _Run:
    """The softphones and the phases of one measurement."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.pairs: list[tuple[_Party, _Party]] = []
        for caller, callee in spec["pairs"]:
            self.pairs.append((self._party(caller), self._party(callee)))
        self.tasks: list[asyncio.Task[None]] = []

    def _party(self, user: dict[str, str]) -> _Party:
        address = user["address"]
        if address not in self.channels:
            self.channels[address] = grpc.aio.insecure_channel(address)
        return _Party(user["username"], user["user_id"], self.channels[address])

    async def set_up(self) -> None:
        parties = [party for pair in self.pairs for party in pair]
        _log(f"logging in {len(parties)} softphones")
        for party in parties:
            reply = await session_grpc.SessionServiceStub(party.channel).Login(
                session_pb.LoginRequest(username=party.username, password=self.spec["password"]),
                timeout=_TIMEOUT,
            )
            party.metadata = (("authorization", f"Bearer {reply.session_token}"),)
            ready = asyncio.Event()
            task = asyncio.create_task(_listen(party, ready))
            self.tasks.append(task)
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait(
                {waiter, task}, timeout=_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if not ready.is_set():
                waiter.cancel()
                if task.done():
                    task.result()  # raises what ended the stream before its welcome
                raise RuntimeError(f"no welcome on the Connect stream of {party.username}")

    async def sequential(self, tones: _Tones) -> dict[str, Any]:
        """``calls`` calls with media, one at a time."""
        count = int(self.spec["calls"])
        _log(f"warming up: {_WARMUP_CALLS} calls with media")
        for k in range(_WARMUP_CALLS):
            await _one_call(*self.pairs[k % len(self.pairs)], tones)
        _log(f"{count} calls with media, one at a time")
        samples: dict[str, list[float]] = {}
        meter = _CpuMeter(self.spec["pids"])
        begun = _now()
        for k in range(count):
            for name, value in (await _one_call(*self.pairs[k % len(self.pairs)], tones)).items():
                samples.setdefault(name, []).append(value)
        elapsed = _now() - begun
        result: dict[str, Any] = {
            "calls": count,
            "sequential_calls_per_s": round(count / elapsed, 2),
        }
        for name, values in samples.items():
            result.update(_figures(name, values))
        result["cpu_ms_per_call_with_media"] = meter.per(count)
        return result

    async def concurrent(self) -> dict[str, Any]:
        """``setups`` set-ups without media, ``concurrency`` at a time."""
        setups, concurrency = int(self.spec["setups"]), int(self.spec["concurrency"])
        _log(f"{setups} set-ups without media, {concurrency} at a time")
        left = [setups]
        ringing: list[float] = []
        setup: list[float] = []

        async def worker(pair: tuple[_Party, _Party]) -> None:
            while left[0] > 0:
                left[0] -= 1
                times = await _one_call(*pair, None)
                ringing.append(times["ringing"])
                setup.append(times["setup"])

        meter = _CpuMeter(self.spec["pids"])
        begun = _now()
        await asyncio.gather(*(worker(self.pairs[i]) for i in range(concurrency)))
        elapsed = _now() - begun
        return {
            "setups": setups,
            "concurrency": concurrency,
            # whole cycles (place, ringing, answer, connected, hang up, ended) per second
            "setups_per_s": round(setups / elapsed, 1),
            **_figures("loaded_ringing", ringing),
            **_figures("loaded_setup", setup),
            "cpu_ms_per_setup": meter.per(setups),
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels.values():
            await channel.close()


async def _baseline(spec: dict[str, Any]) -> dict[str, Any]:
    calls, setups = int(spec["calls"]), int(spec["setups"])
    _log("baseline: bare grpc.aio unary round trips")
    bare = await measure_unary(
        round_trips=calls * UNARY_CALLS_WITH_MEDIA,
        group=SETUP_UNARY_CALLS,
        groups=setups,
        concurrency=int(spec["concurrency"]),
    )
    single, grouped = bare.single, bare.grouped
    return {
        "baseline_round_trips": len(single),
        "baseline_unary_p50_ms": _ms(single, 0.50),
        "baseline_unary_p99_ms": _ms(single, 0.99),
        "baseline_setup_p50_ms": _ms(grouped, 0.50),
        "baseline_setup_p99_ms": _ms(grouped, 0.99),
        "baseline_setups_per_s": round(bare.groups_per_s, 1),
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the phases described by ``spec``; returns the figures."""
    tones = _Tones(encode_tone(CALLER_HZ), encode_tone(CALLEE_HZ))
    bench = _Run(spec)
    try:
        await bench.set_up()
        await asyncio.sleep(0.5)
        result = await bench.sequential(tones)
        result.update(await bench.concurrent())
    finally:
        await bench.close()
    result.update(await _baseline(spec))
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> int:
    """Entry point: ``python -m procall.bench.calls_loadgen SPEC.json``."""
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
