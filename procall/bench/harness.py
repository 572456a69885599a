"""What the load generators of ``procall bench presence`` and ``chat`` share.

A load generator is one process playing thousands of clients: its own cost must stay
small and known, or it distorts what it measures. So it collects garbage rarely
(:func:`tune_gc`, after set-up), acks every stream from one shared ticker
(:class:`AckTicker`, not a timer per client), spreads its clients over several
connections (:class:`ChannelPool`), issues work open loop on a schedule
(:func:`drive`) and reads every process's CPU time around a window (:class:`CpuMeter`).
:func:`find_knee` ramps the offered rate to the highest one whose p99 stays under a
limit.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.client import ClientOptions
from procall.servers.runtime.vitals import read_vitals

__all__ = [
    "ACK_EVERY",
    "ACK_INTERVAL",
    "CALL_TIMEOUT",
    "SETUP_CONCURRENCY",
    "AckState",
    "AckTicker",
    "ChannelPool",
    "CpuMeter",
    "Knee",
    "Step",
    "Streams",
    "Window",
    "connect",
    "drive",
    "events_of",
    "find_knee",
    "logger",
    "per_unit_us",
    "window_costs",
    "process_cpu_seconds",
    "tune_gc",
    "wait_welcomed",
]

#: Ack like the SDK does by default: cumulatively, every ``ACK_EVERY`` events or
#: ``ACK_INTERVAL`` seconds.
ACK_EVERY = ClientOptions().ack_every
ACK_INTERVAL = ClientOptions().ack_interval
#: Setup calls in flight at once.
SETUP_CONCURRENCY = 64
#: Seconds one unary call of the setup or teardown may take (logins queue behind argon2).
CALL_TIMEOUT = 60.0
#: grpc queues streams beyond this many on one connection: the pool spreads them.
_CHANNEL_OPTIONS = [("grpc.max_concurrent_streams", 100_000)]


def logger(who: str) -> Callable[[str], None]:
    """A progress line printer for ``who``, on stderr (stdout carries the result)."""

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {who}: {message}", file=sys.stderr, flush=True)

    return log


def tune_gc() -> None:
    """Keep what set-up allocated out of every collection and collect the young generation
    rarely: untuned, the generator's GC took 0.9 s of every 12 s at 5,000 clients."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def process_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds process ``pid`` has used (0.0 once it is gone); with
    ``children``, plus those of its child processes, live or reaped (PostgreSQL's
    backends)."""
    total = _stat_cpu(pid)
    if children:
        fields = _stat_fields(pid)
        if fields:  # what its reaped children used
            total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _parent(entry) == pid:
                total += _stat_cpu(int(entry.name))
    return total


def _stat_fields(pid: int | str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _stat_cpu(pid: int) -> float:
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _parent(entry: Path) -> int:
    fields = _stat_fields(entry.name)
    return int(fields[1]) if fields else -1


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds each named process (and this one, as ``loadgen``) used in a window."""

    def __init__(self, pids: dict[str, int], with_children: Iterable[str] = ()) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.with_children = set(with_children)
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {
            name: process_cpu_seconds(pid, children=name in self.with_children)
            for name, pid in self.pids.items()
        }
        now["loadgen"] = _own_cpu_seconds()
        return now

    def start(self) -> None:
        """Mark the window's start."""
        self._before = self._now()

    def stop(self) -> dict[str, float]:
        """Seconds of CPU per process since :meth:`start`."""
        return {name: s - self._before.get(name, 0.0) for name, s in self._now().items()}


def per_unit_us(cpu: dict[str, float], units: int) -> dict[str, float]:
    """Microseconds of CPU per delivered unit (delivery, message), per process."""
    return {name: round(1e6 * s / max(1, units), 1) for name, s in cpu.items()}


class ChannelPool:
    """Connections per server address, each shared by ``per_channel`` clients: many
    clients make many connections, and grpc would queue streams on a single one."""

    def __init__(self, per_channel: int) -> None:
        self.per_channel = per_channel
        self._pools: dict[str, list[grpc.aio.Channel]] = {}
        self._counts: dict[str, int] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        """The connection the next client of ``address`` uses."""
        pool = self._pools.setdefault(address, [])
        count = self._counts.get(address, 0)
        self._counts[address] = count + 1
        if count % self.per_channel == 0:
            # a separate connection (not a shared subchannel) for each block of clients
            options = [*_CHANNEL_OPTIONS, ("procall.bench.connection", len(pool))]
            pool.append(grpc.aio.insecure_channel(address, options=options))
        return pool[-1]

    async def close(self) -> None:
        """Close every connection."""
        for pool in self._pools.values():
            for channel in pool:
                await channel.close()
        self._pools.clear()
        self._counts.clear()


@dataclass(eq=False)
class AckState:
    """One stream's acknowledgement: the last sequence received and the last acked."""

    write: Callable[[int], Awaitable[None]]
    last: int = 0
    acked: int = 0
    writing: bool = False


class AckTicker:
    """Acks every stream like the SDK, from one task: a stream that received ``every``
    unacked events acks at once (from its reader); every ``interval`` seconds the ticker
    acks whatever else is unacked."""

    def __init__(self, every: int = ACK_EVERY, interval: float = ACK_INTERVAL) -> None:
        self.every = every
        self.interval = interval
        self.states: list[AckState] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, write: Callable[[int], Awaitable[None]]) -> AckState:
        """Track a stream whose acks ``write`` sends."""
        state = AckState(write)
        self.states.append(state)
        return state

    async def received(self, state: AckState, sequence: int) -> None:
        """The stream of ``state`` received event ``sequence``."""
        state.last = sequence
        if state.last - state.acked >= self.every:
            await self._ack(state)

    async def _ack(self, state: AckState) -> None:
        if state.writing or state.last <= state.acked:
            return  # one write at a time per stream; the next event or tick catches up
        state.writing = True
        try:
            state.acked = state.last
            await state.write(state.acked)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass  # the stream ended; its reader reports it
        finally:
            state.writing = False

    def start(self) -> None:
        """Start the shared timer."""
        self._task = asyncio.create_task(self._tick(), name="ack-ticker")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            due = [s for s in self.states if s.last > s.acked and not s.writing]
            await asyncio.gather(*(self._ack(s) for s in due))

    async def stop(self) -> None:
        """Stop the timer and forget the streams."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.states.clear()


Listener = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Streams:
    """One system's client streams: opened in waves, acked by one ticker, closed together.

    Clients come online at most ``SETUP_CONCURRENCY`` at a time, each stream waiting for
    its first message (all at once is a reconnect storm: another benchmark)."""

    def __init__(self) -> None:
        self.ticker = AckTicker()
        self.tasks: list[asyncio.Task[None]] = []
        self._gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def open_all(self, listeners: Iterable[Listener]) -> None:
        """Run every listener (``listen(ready)`` sets ``ready`` on its first message)."""
        self.ticker.start()

        async def one(listen: Listener) -> None:
            async with self._gate:
                ready = asyncio.Event()
                task = asyncio.create_task(listen(ready))
                self.tasks.append(task)
                await wait_welcomed(ready, task)

        await asyncio.gather(*(one(listen) for listen in listeners))

    async def close(self) -> None:
        """End every stream and the ticker."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        await self.ticker.stop()


async def connect(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], ticker: AckTicker
) -> tuple[grpc.aio.StreamStreamCall[session_pb.ConnectRequest, session_pb.ConnectResponse],
           AckState]:  # fmt: skip
    """Open a procall ``Connect`` stream as the SDK does (several pending events may come
    in one message) and track its acks on ``ticker``."""
    call = session_grpc.SessionServiceStub(channel).Connect(metadata=metadata)
    opening = session_pb.OpenStream(accept_event_batches=True)
    await call.write(session_pb.ConnectRequest(open=opening))

    async def ack(sequence: int) -> None:
        await call.write(session_pb.ConnectRequest(ack=session_pb.Ack(sequence=sequence)))

    return call, ticker.add(ack)


def events_of(reply: session_pb.ConnectResponse) -> Sequence[session_pb2.Event]:
    """The events of one stream message (several when the server batched them)."""
    if reply.HasField("event"):
        return [reply.event, *reply.events]
    return reply.events


def window_costs(
    cpu: dict[str, float],
    units: int,
    unit: str,
    servers: list[str],
    span: tuple[float, float],
    vitals_dir: Path | None,
) -> dict[str, Any]:
    """A window's costs: CPU per ``unit`` of every process (``cpu_us_per_<unit>``), of the
    ``servers`` together (``server_cpu_us_per_<unit>``), percent of a core, and the loop
    lag and GC pauses the servers recorded during ``span`` (wall-clock since, until):
    a bare window reports the bare servers', a procall window the others'."""
    since, until = span
    per = per_unit_us(cpu, units)
    figures: dict[str, Any] = {
        f"cpu_us_per_{unit}": per,
        f"server_cpu_us_per_{unit}": round(sum(per[n] for n in servers if n in per), 1),
        "cpu_percent": {n: round(100 * s / max(1e-9, until - since), 1) for n, s in cpu.items()},
    }
    if vitals_dir is not None:
        bare_side = bool(servers) and servers[0].startswith("bare-")
        figures["vitals"] = {
            name: v.as_dict()
            for name, v in read_vitals(vitals_dir, since, until).items()
            if name.startswith("bare-") == bare_side
        }
    return figures


async def wait_welcomed(ready: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Wait until a stream's first message (``ready``) or raise what ended ``task`` first."""
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        waiter.cancel()
        task.result()  # raises what ended the stream before its welcome
        raise RuntimeError("a stream ended before its welcome")


@dataclass
class Window:
    """What :func:`drive` issued: counts, the generator's own lateness, the unfinished."""

    sent: int = 0
    skipped: int = 0
    #: seconds each issue came after its scheduled time
    lags: list[float] = field(default_factory=list)
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    started: float = 0.0


async def drive(
    rate: float,
    seconds: float,
    issue: Callable[[int], Coroutine[Any, Any, None] | None],
) -> Window:
    """Issue ``rate`` operations per second for ``seconds``, open loop: operation *k* is
    issued at ``start + k / rate`` whether or not the earlier ones are answered.
    ``issue(k)`` returns the operation, or None to skip it (a client with one in flight)."""
    window = Window(started=time.perf_counter())
    total = max(1, round(rate * seconds))
    k = 0
    while k < total:
        now = time.perf_counter()
        due = min(total, int((now - window.started) * rate) + 1)
        while k < due:
            work = issue(k)
            if work is None:
                window.skipped += 1
            else:
                window.lags.append(now - (window.started + k / rate))
                task = asyncio.create_task(work)
                window.pending.add(task)
                task.add_done_callback(window.pending.discard)
                window.sent += 1
            k += 1
        await asyncio.sleep(max(0.0, window.started + k / rate - time.perf_counter()))
    return window


@dataclass(frozen=True)
class Step:
    """One rate of a ramp: its p99 and whether it held (p99 under the limit, nearly all
    delivered, nothing failed)."""

    rate: float
    p99_ms: float
    ok: bool


@dataclass(frozen=True)
class Knee:
    """The highest offered rate that held, and the steps that found it."""

    rate: float
    steps: list[Step]


async def find_knee(
    measure: Callable[[float], Awaitable[Step]],
    start: float,
    *,
    ceiling: float,
    bisections: int = 2,
) -> Knee:
    """Double the rate from ``start`` until a step fails or ``ceiling`` holds, then bisect
    between the last rate that held and the first that failed ``bisections`` times.
    When ``start`` fails already, halves it (at most twice) first."""
    steps: list[Step] = []
    good, bad = 0.0, 0.0
    rate = start
    for _ in range(3):  # downwards when even the start fails
        step = await measure(rate)
        steps.append(step)
        if step.ok:
            good = rate
            break
        bad, rate = rate, rate / 2
    if good:
        while bad == 0.0 and good < ceiling:
            rate = min(ceiling, good * 2)
            step = await measure(rate)
            steps.append(step)
            if step.ok:
                good = rate
            else:
                bad = rate
        for _ in range(bisections if bad else 0):
            rate = round((good + bad) / 2)
            step = await measure(rate)
            steps.append(step)
            if step.ok:
                good = rate
            else:
                bad = rate
    return Knee(good, steps)
