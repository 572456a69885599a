"""The load generator of ``procall bench chat``: a separate process holding the clients.

``python -m procall.bench.chat_loadgen SPEC.json`` logs in both members of every 1:1
conversation on their home UCServers (one member on each server), opens every
member's ``Connect`` stream, creates the conversations and sends one message each
way through every conversation as a warm-up. It then sends at a steady rate, open
loop — send *k* is issued at ``start + k / rate`` whether or not the earlier ones
have been answered — alternating the direction (uc-1 to uc-2, then uc-2 to uc-1),
and measures for every send the time from just before the ``SendMessage`` call to
the ``message_created`` event's arrival on the receiver's stream: both ends are in
this process and read the same monotonic clock. Clients ack what they received the
way the SDK does. It prints one JSON object with the figures, including failed
sends by status code and the CPU time each process of the topology used during the
measurement.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import uvloop

from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.bench.stats import percentile
from procall.client import ClientOptions

__all__ = ["main", "run"]

#: Ack like the SDK does by default.
ACK_EVERY = ClientOptions().ack_every
ACK_INTERVAL = ClientOptions().ack_interval
#: Setup calls in flight at once.
_SETUP_CONCURRENCY = 64
#: Seconds one unary call of the setup or teardown may take (logins queue behind argon2).
_CALL_TIMEOUT = 60.0
#: Conversation creations in flight at once (SQLite takes one writer at a time).
_SQL_CONCURRENCY = 4
#: Clients sharing one connection: several connections per server, as many clients make.
_CLIENTS_PER_CHANNEL = 50
_OPTIONS = [("grpc.max_concurrent_streams", 100_000)]
#: Seconds to wait for the warm-up messages and, after the run, for the last deliveries.
_WARMUP_TIMEOUT = 30.0
#: After the last send: how long to wait for answers and deliveries while they still come
#: in, and at most.
_DRAIN_IDLE_SECONDS = 5.0
_DRAIN_MAX_SECONDS = 60.0
_TEXT = "bench message " + "x" * 64


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} chat-loadgen: {message}", file=sys.stderr, flush=True)


@dataclass(eq=False)
class _Client:
    username: str
    user_id: str
    address: str
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...] = ()
    last_sequence: int = 0
    acked: int = 0
    ack_now: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def chat(self) -> chat_grpc.ChatServiceAsyncStub:
        return chat_grpc.ChatServiceStub(self.channel)


@dataclass
class _Tally:
    """Sends issued and deliveries seen, keyed by request id."""

    #: request id -> monotonic time just before its SendMessage call
    issued: dict[str, float] = field(default_factory=dict)
    #: request id -> monotonic time its receiver got it (the first time)
    delivered: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    duplicates: int = 0
    #: request ids the warm-up waits for
    awaited: set[str] = field(default_factory=set)
    warm: asyncio.Event = field(default_factory=asyncio.Event)

    def received(self, message: chat_pb2.Message, now: float) -> None:
        request_id = message.request_id
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children, live or reaped (PostgreSQL's
    backends are children of the postmaster); 0.0 once the process is gone."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if stat.parent.name == str(pid):  # utime, stime, then what its reaped children used
            ticks += sum(int(value) for value in fields[11:15])
        elif fields[1] == str(pid):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _events(reply: session_pb.ConnectResponse) -> list[session_pb2.Event]:
    """The events of one stream message (several when the server coalesced them)."""
    if reply.HasField("event"):
        return [reply.event, *reply.events]
    return list(reply.events)


async def _listen(client: _Client, tally: _Tally, ready: asyncio.Event) -> None:
    call = session_grpc.SessionServiceStub(client.channel).Connect(metadata=client.metadata)
    opening = session_pb.OpenStream(accept_event_batches=True)
    await call.write(session_pb.ConnectRequest(open=opening))
    acks = asyncio.create_task(_ack(call, client))
    try:
        async for reply in call:
            ready.set()
            now = time.perf_counter()
            for event in _events(reply):
                if event.sequence:
                    client.last_sequence = event.sequence
                if event.WhichOneof("payload") != "message_created":
                    continue
                message = event.message_created.message
                if message.sender_user_id != client.user_id:  # not the sender's own echo
                    tally.received(message, now)
            if client.last_sequence - client.acked >= ACK_EVERY:
                client.ack_now.set()
    finally:
        acks.cancel()


async def _ack(
    call: grpc.aio.StreamStreamCall[session_pb.ConnectRequest, session_pb.ConnectResponse],
    client: _Client,
) -> None:
    while True:
        try:
            await asyncio.wait_for(client.ack_now.wait(), ACK_INTERVAL)
        except TimeoutError:
            pass
        client.ack_now.clear()
        if client.last_sequence > client.acked:
            client.acked = client.last_sequence
            await call.write(session_pb.ConnectRequest(ack=session_pb.Ack(sequence=client.acked)))


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


class _Run:
    """The clients, their streams and the conversations of one measurement."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.tally = _Tally()
        self.channels: list[grpc.aio.Channel] = []
        self.pairs: list[tuple[_Client, _Client]] = []
        self.conversations: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []
        pools: dict[str, list[grpc.aio.Channel]] = {}
        counts: Counter[str] = Counter()

        def client(user: dict[str, str]) -> _Client:
            address = user["address"]
            pool = pools.setdefault(address, [])
            if counts[address] % _CLIENTS_PER_CHANNEL == 0:
                # a separate connection (not a shared subchannel) for each block of clients
                options = [*_OPTIONS, ("procall.bench.connection", len(pool))]
                pool.append(grpc.aio.insecure_channel(address, options=options))
                self.channels.append(pool[-1])
            counts[address] += 1
            return _Client(user["username"], user["user_id"], address, pool[-1])

        for pair in spec["pairs"]:
            self.pairs.append((client(pair[0]), client(pair[1])))
        self.clients = [c for pair in self.pairs for c in pair]
        self.gate = asyncio.Semaphore(_SETUP_CONCURRENCY)

    async def set_up(self) -> None:
        password = self.spec["password"]

        async def login(client: _Client) -> None:
            async with self.gate:
                reply = await session_grpc.SessionServiceStub(client.channel).Login(
                    session_pb.LoginRequest(username=client.username, password=password),
                    timeout=_CALL_TIMEOUT,
                )
            client.metadata = (("authorization", f"Bearer {reply.session_token}"),)

        _log(f"logging in {len(self.clients)} clients")
        await asyncio.gather(*(login(c) for c in self.clients))
        _log("opening the streams")
        await asyncio.gather(*(self._open_stream(c) for c in self.clients))
        _log(f"creating {len(self.pairs)} conversations")
        sql_gate = asyncio.Semaphore(_SQL_CONCURRENCY)

        async def create(first: _Client, second: _Client) -> str:
            request = chat_pb.CreateConversationRequest(
                kind=chat_pb2.CONVERSATION_KIND_DIRECT,
                member_user_ids=[second.user_id],
                request_id=f"bench-{first.user_id}-{second.user_id}",
            )
            for attempt in range(20):
                try:
                    async with sql_gate:
                        reply = await first.chat.CreateConversation(
                            request, metadata=first.metadata, timeout=_CALL_TIMEOUT
                        )
                    return str(reply.conversation.conversation_id)
                except grpc.aio.AioRpcError as error:
                    # SQLite takes one writer at a time: a busy database answers UNAVAILABLE
                    if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 19:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
            raise AssertionError("unreachable")

        self.conversations = list(await asyncio.gather(*(create(*p) for p in self.pairs)))

    async def _open_stream(self, client: _Client) -> None:
        async with self.gate:
            ready = asyncio.Event()
            task = asyncio.create_task(_listen(client, self.tally, ready))
            self.tasks.append(task)
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.is_set():
                waiter.cancel()
                task.result()  # raises what ended the stream before its welcome
                raise RuntimeError("a Connect stream ended before its welcome")

    def sender(self, k: int) -> tuple[_Client, str]:
        """Who sends message ``k`` and into which conversation: the direction alternates."""
        index = k % len(self.pairs)
        first, second = self.pairs[index]
        return (first if (k // len(self.pairs)) % 2 == 0 else second), self.conversations[index]

    async def warm_up(self) -> None:
        """One message each way through every conversation; waits until all arrived."""
        _log("warming up")
        count = 2 * len(self.pairs)
        ids = [f"warm-{k}" for k in range(count)]
        self.tally.awaited = set(ids)
        self.tally.warm.clear()
        for request_id in ids:
            self.tally.issued[request_id] = time.perf_counter()
        await asyncio.gather(
            *(self._send(*self.sender(k), request_id) for k, request_id in enumerate(ids))
        )
        try:
            await asyncio.wait_for(self.tally.warm.wait(), _WARMUP_TIMEOUT)
        except TimeoutError:
            missing = len(self.tally.awaited)
            raise RuntimeError(f"{missing} of {count} warm-up messages never arrived") from None
        self.tally.awaited.clear()

    async def _send(self, client: _Client, conversation_id: str, request_id: str) -> None:
        await client.chat.SendMessage(
            chat_pb.SendMessageRequest(
                conversation_id=conversation_id, text=_TEXT, request_id=request_id
            ),
            metadata=client.metadata,
            timeout=_CALL_TIMEOUT,
        )

    async def measure(self) -> dict[str, Any]:
        """Send open loop at the spec's rate for its duration; returns the figures."""
        rate, duration = float(self.spec["rate"]), float(self.spec["seconds"])
        pids: dict[str, int] = self.spec.get("pids", {})
        tally = self.tally
        tally.issued.clear()
        tally.delivered.clear()
        tally.latencies.clear()
        tally.duplicates = 0
        errors: Counter[str] = Counter()
        #: status code -> the details of its first occurrence
        examples: dict[str, str] = {}
        send_latencies: list[float] = []
        lags: list[float] = []
        answered: set[str] = set()

        async def send(k: int, request_id: str) -> None:
            client, conversation_id = self.sender(k)
            begun = time.perf_counter()
            tally.issued[request_id] = begun
            try:
                await self._send(client, conversation_id, request_id)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
                examples.setdefault(error.code().name, str(error.details()))
                return
            send_latencies.append(time.perf_counter() - begun)
            answered.add(request_id)

        _log(f"measuring for {duration} s at {rate} messages/s")
        profilers = _start_profilers(self.spec.get("profile"), duration)
        cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        own_before = _own_cpu_seconds()
        pending: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        total = max(1, round(rate * duration))
        sent = 0
        while sent < total:
            now = time.perf_counter()
            due = min(total, int((now - started) * rate) + 1)
            while sent < due:
                lags.append(now - (started + sent / rate))
                task = asyncio.create_task(send(sent, f"m-{sent}"))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            next_due = started + sent / rate
            await asyncio.sleep(max(0.0, next_due - time.perf_counter()))
        sending_ended = time.perf_counter()
        window_end = started + duration
        # the last answers and deliveries; a send never answered counts as an error
        deadline = sending_ended + _DRAIN_MAX_SECONDS
        progress = (len(pending), len(tally.delivered))
        quiet_since = time.perf_counter()
        while pending or len(tally.delivered) < len(answered):
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            if (len(pending), len(tally.delivered)) != progress:
                progress, quiet_since = (len(pending), len(tally.delivered)), now
            if now > deadline or now - quiet_since > _DRAIN_IDLE_SECONDS:
                break
        unanswered = list(pending)
        for task in unanswered:
            task.cancel()
        if unanswered:
            errors["NO_ANSWER"] += len(unanswered)
            examples["NO_ANSWER"] = "no answer when the run ended (the bench gave up waiting)"
        cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu["loadgen"] = _own_cpu_seconds() - own_before
        measured = time.perf_counter() - started
        for profiler in profilers:
            _finish_profiler(profiler)
        in_window = sum(1 for t in tally.delivered.values() if t <= window_end)
        lost = len(answered - tally.delivered.keys())
        samples = tally.latencies
        return {
            "offered_rate": rate,
            "duration_s": duration,
            "conversations": len(self.pairs),
            "sent": sent,
            "answered": len(answered),
            "delivered": len(tally.delivered),
            "lost": lost,
            "duplicates": tally.duplicates,
            "errors": sum(errors.values()),
            "error_codes": dict(errors),
            "error_examples": examples,
            "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
            "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
            "max_ms": round(max(samples, default=0.0) * 1000, 3),
            "send_p50_ms": round(percentile(send_latencies, 0.50) * 1000, 3),
            "send_p99_ms": round(percentile(send_latencies, 0.99) * 1000, 3),
            # how late the generator issued sends against their schedule (its own backlog)
            "issue_lag_p99_ms": round(percentile(lags, 0.99) * 1000, 3),
            # deliveries that arrived within the sending window, per second of it
            "messages_per_s": round(in_window / duration, 1),
            # all deliveries, per second from the first send to the last delivery: what an
            # overloaded system still got through, late
            "delivered_per_s_overall": round(
                len(tally.delivered)
                / max(1e-9, max(tally.delivered.values(), default=0.0) - started),
                1,
            ),
            # CPU the UCServers together spent per delivered message: the cost of a message,
            # which contention on a shared machine distorts less than the latencies
            "ucserver_cpu_ms_per_message": round(
                1000
                * sum(s for name, s in cpu.items() if name.startswith("ucserver"))
                / max(1, len(tally.delivered)),
                3,
            ),
            "cpu_ms_per_message": {
                name: round(1000 * s / max(1, len(tally.delivered)), 3) for name, s in cpu.items()
            },
            # percent of one core during the measurement, per process
            "cpu_percent": {name: round(100 * s / measured, 1) for name, s in cpu.items()},
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement described by ``spec``; returns the figures."""
    bench = _Run(spec)
    try:
        await bench.set_up()
        await bench.warm_up()
        await asyncio.sleep(0.5)
        return await bench.measure()
    finally:
        await bench.close()


def main() -> int:
    """Entry point: ``python -m procall.bench.chat_loadgen SPEC.json``."""
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
