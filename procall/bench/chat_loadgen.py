"""The load generator of ``procall bench chat``: a separate process holding the clients.

``python -m procall.bench.chat_loadgen SPEC.json`` logs in both members of every 1:1
conversation on their home UCServers (one member on each server), opens every
member's ``Connect`` stream, creates the conversations and sends one message each way
through every conversation as a warm-up. Then, with the generator's GC tuned and one
ack ticker for all streams (``harness.py``):

1. the main window: sends at a steady rate, open loop (send *k* is issued at
   ``start + k / rate`` whether or not the earlier ones have been answered),
   alternating the direction, and measures for every send the time from just before
   the ``SendMessage`` call to the ``message_created`` event's arrival on the
   receiver's stream (both ends are in this process and read the same monotonic
   clock), the CPU every process used per delivered message, and the loop lag and GC
   pauses the servers recorded (``PROCALL_VITALS_DIR``);
2. the knee: a step ramp (doubling, then bisecting) to the highest offered rate whose
   p99 stays under 50 ms with nothing failed or lost;
3. the same two for the same-pattern bare baseline (``bare.py``): a stream per member,
   one unary call, one Redis round trip and one SQL row (same database) per message,
   across two servers, messages of the size procall's had in step 1.

It prints one JSON object with the figures, including failed sends by status code.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import uvloop

from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.bench import bare
from procall.bench.harness import (
    CALL_TIMEOUT,
    SETUP_CONCURRENCY,
    ChannelPool,
    CpuMeter,
    Step,
    Streams,
    connect,
    drive,
    events_of,
    find_knee,
    logger,
    tune_gc,
    window_costs,
)
from procall.bench.stats import percentile
from procall.servers.runtime.vitals import ENV_VAR

__all__ = ["main", "run"]

#: Conversation creations in flight at once (SQLite takes one writer at a time).
_SQL_CONCURRENCY = 4
#: Clients sharing one connection: several connections per server, as many clients make.
_CLIENTS_PER_CHANNEL = 50
#: Seconds to wait for the warm-up messages.
_WARMUP_TIMEOUT = 30.0
#: After the last send: how long to wait for answers and deliveries while they still come
#: in, and at most (the main window; a ramp step waits less).
_DRAIN_IDLE_SECONDS = 5.0
_DRAIN_MAX_SECONDS = 60.0
_RAMP_DRAIN_MAX_SECONDS = 10.0
#: A ramp step holds when its p99 is under this (ms), with nothing failed or lost.
_KNEE_P99_MS = 50.0
_TEXT = "bench message " + "x" * 64
_log = logger("chat-loadgen")


@dataclass
class _Tally:
    """Sends issued and answered, deliveries seen, keyed by request id."""

    #: request id -> monotonic time just before its send
    issued: dict[str, float] = field(default_factory=dict)
    #: request id -> monotonic time its receiver got it (the first time)
    delivered: dict[str, float] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    send_latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: status code -> the details of its first occurrence
    examples: dict[str, str] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)
    duplicates: int = 0
    #: request ids the warm-up waits for
    awaited: set[str] = field(default_factory=set)
    warm: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        """Start counting a new window."""
        for collection in (self.issued, self.delivered, self.answered, self.errors):
            collection.clear()
        for samples in (self.latencies, self.send_latencies, self.sizes):
            samples.clear()
        self.examples.clear()
        self.duplicates = 0

    def received(self, request_id: str, now: float) -> None:
        if request_id in self.delivered:
            self.duplicates += 1
            return
        begun = self.issued.get(request_id)
        if begun is None:
            return
        self.delivered[request_id] = now
        self.latencies.append(now - begun)
        if self.awaited:
            self.awaited.discard(request_id)
            if not self.awaited:
                self.warm.set()

    async def send(self, request_id: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Make and time the send ``call()`` of ``request_id``; count its failure by code."""
        begun = time.perf_counter()
        self.issued[request_id] = begun
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            self.errors[error.code().name] += 1
            self.examples.setdefault(error.code().name, str(error.details()))
            return
        self.send_latencies.append(time.perf_counter() - begun)
        self.answered.add(request_id)


class _Side(Protocol):
    """One system under load: procall or the bare baseline."""

    tally: _Tally

    def issue(self, k: int) -> Any: ...


class _Procall:
    """The procall clients, their streams and the conversations."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.tally = _Tally()
        self.pool = ChannelPool(_CLIENTS_PER_CHANNEL)
        #: per member: (username, user_id, channel); pairs are (2p, 2p + 1)
        self.members = [
            (user["username"], user["user_id"], self.pool.channel(user["address"]))
            for pair in spec["pairs"]
            for user in pair
        ]
        self.metadata: list[tuple[tuple[str, str], ...]] = [() for _ in self.members]
        self.stubs = [chat_grpc.ChatServiceStub(channel) for _, _, channel in self.members]
        self.conversations: list[str] = []
        self.streams = Streams()
        self.gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    @property
    def pairs(self) -> int:
        return len(self.members) // 2

    async def set_up(self) -> None:
        password = self.spec["password"]

        async def login(i: int) -> None:
            username, _, channel = self.members[i]
            async with self.gate:
                reply = await session_grpc.SessionServiceStub(channel).Login(
                    session_pb.LoginRequest(username=username, password=password),
                    timeout=CALL_TIMEOUT,
                )
            self.metadata[i] = (("authorization", f"Bearer {reply.session_token}"),)

        _log(f"logging in {len(self.members)} clients")
        await asyncio.gather(*(login(i) for i in range(len(self.members))))
        _log("opening the streams")
        listeners = (functools.partial(self._listen, i) for i in range(len(self.members)))
        await self.streams.open_all(listeners)
        _log(f"creating {self.pairs} conversations")
        sql_gate = asyncio.Semaphore(_SQL_CONCURRENCY)

        async def create(p: int) -> str:
            first, second = 2 * p, 2 * p + 1
            request = chat_pb.CreateConversationRequest(
                kind=chat_pb2.CONVERSATION_KIND_DIRECT,
                member_user_ids=[self.members[second][1]],
                request_id=f"bench-{self.members[first][1]}-{self.members[second][1]}",
            )
            for attempt in range(20):
                try:
                    async with sql_gate:
                        reply = await self.stubs[first].CreateConversation(
                            request, metadata=self.metadata[first], timeout=CALL_TIMEOUT
                        )
                    return str(reply.conversation.conversation_id)
                except grpc.aio.AioRpcError as error:
                    # SQLite takes one writer at a time: a busy database answers UNAVAILABLE
                    if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 19:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
            raise AssertionError("unreachable")

        self.conversations = list(await asyncio.gather(*(create(p) for p in range(self.pairs))))

    async def _listen(self, i: int, ready: asyncio.Event) -> None:
        _, me, channel = self.members[i]
        ticker = self.streams.ticker
        call, state = await connect(channel, self.metadata[i], ticker)
        tally = self.tally
        async for reply in call:
            ready.set()
            now = time.perf_counter()
            events = events_of(reply)
            sequence = 0
            for event in events:
                sequence = event.sequence or sequence
                if event.WhichOneof("payload") != "message_created":
                    continue
                message = event.message_created.message
                if message.sender_user_id != me:  # not the sender's own echo
                    tally.received(message.request_id, now)
                    if len(tally.sizes) < 2000:
                        tally.sizes.append(event.ByteSize())
            if sequence:
                await ticker.received(state, sequence)

    def _sender(self, k: int) -> tuple[int, str]:
        """Who sends message ``k`` and into which conversation: the direction alternates."""
        p = k % self.pairs
        return 2 * p + (k // self.pairs) % 2, self.conversations[p]

    def _call(self, k: int, request_id: str) -> Any:
        sender, conversation_id = self._sender(k)
        return self.stubs[sender].SendMessage(
            chat_pb.SendMessageRequest(
                conversation_id=conversation_id, text=_TEXT, request_id=request_id
            ),
            metadata=self.metadata[sender],
            timeout=CALL_TIMEOUT,
        )

    def issue(self, k: int) -> Any:
        request_id = f"m-{time.perf_counter_ns()}-{k}"  # unique across windows
        return self.tally.send(request_id, lambda: self._call(k, request_id))

    async def warm_up(self) -> None:
        """One message each way through every conversation; waits until all arrived."""
        _log("warming up")
        count = 2 * self.pairs
        ids = [f"warm-{k}" for k in range(count)]
        self.tally.awaited = set(ids)
        self.tally.warm.clear()
        await asyncio.gather(
            *(self.tally.send(r, functools.partial(self._call, k, r)) for k, r in enumerate(ids))
        )
        try:
            await asyncio.wait_for(self.tally.warm.wait(), _WARMUP_TIMEOUT)
        except TimeoutError:
            missing = len(self.tally.awaited)
            raise RuntimeError(f"{missing} of {count} warm-up messages never arrived") from None
        self.tally.awaited.clear()

    async def close(self) -> None:
        await self.streams.close()
        await self.pool.close()


class _Bare:
    """The bare baseline's clients: one stream per member following its own key, one
    Send per message to the other member (see ``bare.py``)."""

    def __init__(self, pairs: int, servers: list[bare.BareServer], size: int) -> None:
        self.pairs = pairs
        self.tally = _Tally()
        self.pool = ChannelPool(_CLIENTS_PER_CHANNEL)
        # member 2p on the first server, 2p + 1 on the second, as procall's
        self.channels = [self.pool.channel(servers[m % 2].address) for m in range(2 * pairs)]
        self.senders: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(bare.SEND) for channel in self.channels
        ]
        self.streams = Streams()
        #: the padding that makes a payload as large as procall's event
        self.size = size - 8

    async def set_up(self) -> None:
        listeners = (functools.partial(self._listen, m) for m in range(2 * self.pairs))
        await self.streams.open_all(listeners)

    async def _listen(self, m: int, ready: asyncio.Event) -> None:
        ticker = self.streams.ticker
        call, state = await bare.follow(self.channels[m], [m], ticker)
        async for message in call:
            ready.set()
            sequence = int.from_bytes(message[:8], "big")
            if sequence:  # not the welcome
                request_id = message[8:].split(b" ", 1)[0].decode()
                self.tally.received(request_id, time.perf_counter())
                await ticker.received(state, sequence)

    def issue(self, k: int) -> Any:
        p = k % self.pairs
        sender = 2 * p + (k // self.pairs) % 2
        request_id = f"m-{time.perf_counter_ns()}-{k}"
        payload = (request_id + " ").encode().ljust(self.size, b"x")
        request = str(sender ^ 1).encode() + b"\n" + payload
        send = self.senders[sender]
        return self.tally.send(request_id, lambda: send(request, timeout=CALL_TIMEOUT))

    async def close(self) -> None:
        await self.streams.close()
        await self.pool.close()


def _start_profilers(
    profile: dict[str, Any] | None, seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy on each named process for the measurement (collapsed stacks, one file each)."""
    if not profile:
        return []
    started = []
    for name, pid in profile["pids"].items():
        output = Path(profile["dir"]) / f"{name}.txt"
        started.append(
            subprocess.Popen(
                [profile["py_spy"], "record", "--pid", str(pid), "--duration",
                 str(max(1, int(seconds))), "--format", "raw", "--function", "--nonblocking",
                 "--output", str(output)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )  # fmt: skip
    return started


def _finish_profiler(process: subprocess.Popen[bytes]) -> None:
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        _, stderr = process.communicate()
    if process.returncode != 0:
        _log(f"py-spy failed: {stderr.decode(errors='replace').strip()[-300:]}")


async def _window(
    side: _Side,
    rate: float,
    seconds: float,
    *,
    meter: CpuMeter | None = None,
    drain_max: float = _DRAIN_MAX_SECONDS,
    profile: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send ``rate`` messages per second for ``seconds``; the window's figures."""
    tally = side.tally
    tally.reset()
    profilers = _start_profilers(profile, seconds)
    if meter is not None:
        meter.start()
    since = time.time()
    window = await drive(rate, seconds, side.issue)
    sending_ended = time.perf_counter()
    window_end = window.started + seconds
    # the last answers and deliveries; a send never answered counts as an error
    deadline = sending_ended + drain_max
    progress = (len(window.pending), len(tally.delivered))
    quiet_since = time.perf_counter()
    while window.pending or len(tally.delivered) < len(tally.answered):
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        if (len(window.pending), len(tally.delivered)) != progress:
            progress, quiet_since = (len(window.pending), len(tally.delivered)), now
        if now > deadline or now - quiet_since > _DRAIN_IDLE_SECONDS:
            break
    cpu = meter.stop() if meter is not None else {}
    until = time.time()
    unanswered = list(window.pending)
    for task in unanswered:
        task.cancel()
    await asyncio.gather(*unanswered, return_exceptions=True)
    if unanswered:
        tally.errors["NO_ANSWER"] += len(unanswered)
        tally.examples["NO_ANSWER"] = "no answer when the run ended (the bench gave up waiting)"
    for profiler in profilers:
        _finish_profiler(profiler)
    delivered = tally.delivered
    in_window = sum(1 for t in delivered.values() if t <= window_end)
    samples = tally.latencies
    last = max(delivered.values(), default=0.0)
    return {
        "offered_rate": rate,
        "sent": window.sent,
        "answered": len(tally.answered),
        "delivered": len(delivered),
        "lost": len(tally.answered - delivered.keys()),
        "duplicates": tally.duplicates,
        "errors": sum(tally.errors.values()),
        "error_codes": dict(tally.errors),
        "error_examples": dict(tally.examples),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
        "max_ms": round(max(samples, default=0.0) * 1000, 3),
        "send_p50_ms": round(percentile(tally.send_latencies, 0.50) * 1000, 3),
        "send_p99_ms": round(percentile(tally.send_latencies, 0.99) * 1000, 3),
        # how late the generator issued sends against their schedule (its own backlog)
        "issue_lag_p99_ms": round(percentile(window.lags, 0.99) * 1000, 3),
        # deliveries that arrived within the sending window, per second of it
        "messages_per_s": round(in_window / seconds, 1),
        # all deliveries, per second from the first send to the last delivery: what an
        # overloaded system still got through, late
        "delivered_per_s_overall": round(len(delivered) / max(1e-9, last - window.started), 1),
        "cpu_s": cpu,
        "since": since,
        "until": until,
    }


def _figures(window: dict[str, Any], servers: list[str], vitals_dir: Path | None) -> dict[str, Any]:
    """A window's figures with its costs per message (``servers``: whose CPU is the
    server CPU)."""
    cpu: dict[str, float] = window.pop("cpu_s")
    span = (window.pop("since"), window.pop("until"))
    return window | window_costs(cpu, window["delivered"], "message", servers, span, vitals_dir)


async def _knee(side: _Side, spec: dict[str, Any], who: str) -> dict[str, Any]:
    seconds = float(spec["ramp_seconds"])
    if seconds <= 0:
        return {"knee_per_s": 0.0, "steps": []}

    async def step(rate: float) -> Step:
        figures = await _window(side, rate, seconds, drain_max=_RAMP_DRAIN_MAX_SECONDS)
        ok = figures["p99_ms"] < _KNEE_P99_MS and not figures["errors"] and not figures["lost"]
        first = next(iter(figures["error_examples"].items()), None)
        _log(f"{who} ramp: {rate:g} msg/s p99 {figures['p99_ms']} ms errors "
             f"{figures['errors']} lost {figures['lost']} {'ok' if ok else 'over'}"
             + (f" (first error {first[0]}: {first[1][:200]})" if first else ""))  # fmt: skip
        return Step(rate, figures["p99_ms"], ok)

    knee = await find_knee(step, float(spec["ramp_start"]), ceiling=float(spec["ramp_ceiling"]))
    return {"knee_per_s": knee.rate, "steps": [[s.rate, s.p99_ms, s.ok] for s in knee.steps]}


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurements described by ``spec``; returns the figures."""
    rate, seconds = float(spec["rate"]), float(spec["seconds"])
    pids: dict[str, int] = spec["pids"]
    vitals_dir = Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None
    with_children = ["postgres"]  # its backends
    procall = _Procall(spec)
    try:
        await procall.set_up()
        await procall.warm_up()
        tune_gc()
        await asyncio.sleep(0.5)
        _log(f"procall: measuring {seconds} s at {rate:g} messages/s")
        main_window = await _window(
            procall,
            rate,
            seconds,
            meter=CpuMeter(pids, with_children),
            profile=spec.get("profile"),
        )
        ucservers = [n for n in pids if n.startswith("ucserver")]
        main_window = _figures(main_window, ucservers, vitals_dir)
        sizes = procall.tally.sizes
        event_bytes = round(sum(sizes) / len(sizes)) if sizes else 200
        knee = await _knee(procall, spec, "procall")
    finally:
        await procall.close()

    _log("bare baseline: starting two servers")
    servers = [
        bare.BareServer(f"bare-{n}", "chat", spec["redis_url"], spec["sql_url"]) for n in (1, 2)
    ]
    try:
        servers[0].pair(servers[1])
        servers[1].pair(servers[0])
        baseline = _Bare(procall.pairs, servers, event_bytes)
        await baseline.set_up()
        await asyncio.sleep(0.5)
        bare_pids = {s.name: s.pid for s in servers}
        bare_pids |= {n: pid for n, pid in pids.items() if n in ("redis", "postgres")}
        _log(f"bare baseline: measuring {seconds} s at {rate:g} messages/s")
        bare_window = await _window(
            baseline, rate, seconds, meter=CpuMeter(bare_pids, with_children)
        )
        bare_window = _figures(bare_window, [s.name for s in servers], vitals_dir)
        bare_knee = await _knee(baseline, spec, "bare")
        await baseline.close()
    finally:
        for server in servers:
            server.stop()
    server_us = main_window["server_cpu_us_per_message"]
    bare_us = bare_window["server_cpu_us_per_message"]
    return {
        "duration_s": seconds,
        "conversations": procall.pairs,
        "event_bytes": event_bytes,
        **main_window,
        "baseline_server_cpu_us_per_message": bare_us,
        "cpu_ratio": round(server_us / bare_us, 2) if bare_us else 0.0,
        "knee_per_s": knee["knee_per_s"],
        "baseline_knee_per_s": bare_knee["knee_per_s"],
        "knee_ratio": (
            round(knee["knee_per_s"] / bare_knee["knee_per_s"], 2)
            if bare_knee["knee_per_s"]
            else 0.0
        ),
        "knee_steps": knee["steps"],
        "baseline": {**bare_window, "knee_steps": bare_knee["steps"]},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    """Entry point: ``python -m procall.bench.chat_loadgen SPEC.json``."""
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
