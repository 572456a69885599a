"""The load generator of ``procall bench presence``: a separate process holding the clients.

``python -m procall.bench.loadgen SPEC.json`` logs in every simulated client on its
home UCServer, opens its ``Connect`` stream and makes it watch ``watch`` clients of
the other server. Then, with the generator's GC tuned and one ack ticker for all
streams (``harness.py``):

1. an idle window (clients connected, no changes): the CPU the topology's upkeep
   costs, reported beside the figures; then a warm-up, unmeasured: every client
   changes once at the main window's rate;
2. the main window: presence changes at ``deliveries_per_s / watch`` changes per
   second, open loop, each a ``SetPresence`` with an update mask (availability and
   note, as a client changing its status sends). For every delivery to a watcher it
   measures the time from just before the call (the note carries that wall-clock
   time) to the event's arrival, and the CPU every process used per delivery, with
   the loop lag and GC pauses the servers recorded (``PROCALL_VITALS_DIR``). Like real
   clients each has at most one change in flight: a change due while the client's
   previous one is unanswered is skipped (and counted);
3. the knee: a step ramp (doubling, then bisecting) to the highest offered rate whose
   p99 stays under 50 ms with nearly everything delivered;
4. the same three for the same-pattern bare baseline (``bare.py``): as many streams,
   watching the same users, events of the size procall's had in step 2, one unary
   call and one Redis round trip per change, across two servers.

It prints one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import uvloop
from google.protobuf.field_mask_pb2 import FieldMask

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
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

#: Streams per connection (grpc queues streams beyond its per-connection limit).
_STREAMS_PER_CHANNEL = 1000
#: Contact-list writes in flight at once (the bench's SQLite takes one writer at a time).
_SQL_CONCURRENCY = 4
#: Seconds after a window's last change during which its deliveries still count.
_DRAIN_SECONDS = 1.0
#: A ramp step holds when its p99 is under this (ms) ...
_KNEE_P99_MS = 50.0
#: ... and at least this share of the offered deliveries arrived.
_KNEE_DELIVERED = 0.95
#: Seconds of the idle window.
_IDLE_SECONDS = 2.0
_log = logger("loadgen")


@dataclass(eq=False)
class _User:
    username: str
    user_id: str
    #: the procall UCServer this user is homed on (index 0 or 1)
    side: int
    #: indexes of the users this one watches
    watching: list[int] = field(default_factory=list)
    #: how many users watch this one (each of its changes should reach them all)
    watchers: int = 0
    busy: bool = False
    #: the one user who changes (fan-out runs: everybody else watches it)
    hot: bool = False


@dataclass
class _Tally:
    """What one window's watchers received and its changes answered."""

    latencies: list[float] = field(default_factory=list)
    set_latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    deliveries: int = 0
    expected: int = 0
    messages: int = 0
    sizes: list[int] = field(default_factory=list)
    counting: bool = False

    def reset(self) -> None:
        """Start counting a new window."""
        for samples in (self.latencies, self.set_latencies, self.failures, self.sizes):
            samples.clear()
        self.deliveries = self.expected = self.messages = 0
        self.counting = True


class _Side(Protocol):
    """One system under load: procall or the bare baseline."""

    tally: _Tally
    users: list[_User]

    def issue(self, k: int) -> Any: ...


def _stamp() -> str:
    return f"{time.time():.6f}"


def _changer(users: list[_User], k: int) -> int:
    """Which user makes the ``k``-th change: each in turn, or always the hot one."""
    return 0 if users[0].hot else k % len(users)


class _Procall:
    """The procall clients: sessions, Connect streams, contacts, SetPresence."""

    def __init__(self, spec: dict[str, Any], users: list[_User]) -> None:
        self.spec = spec
        self.users = users
        self.tally = _Tally()
        self.pool = ChannelPool(_STREAMS_PER_CHANNEL)
        addresses = spec["addresses"]
        self.channels = [self.pool.channel(addresses[u.side]) for u in users]
        self.metadata: list[tuple[tuple[str, str], ...]] = [() for _ in users]
        self.streams = Streams()
        self.gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        self.states = [presence_pb2.AVAILABILITY_BUSY, presence_pb2.AVAILABILITY_AWAY]
        self.mask = FieldMask(paths=["availability", "note"])
        self.setters = {
            id(c): presence_grpc.PresenceServiceStub(c).SetPresence for c in set(self.channels)
        }

    async def set_up(self) -> None:
        password = self.spec["password"]

        async def login(i: int) -> None:
            async with self.gate:
                reply = await session_grpc.SessionServiceStub(self.channels[i]).Login(
                    session_pb.LoginRequest(username=self.users[i].username, password=password),
                    timeout=CALL_TIMEOUT,
                )
            self.metadata[i] = (("authorization", f"Bearer {reply.session_token}"),)

        _log(f"logging in {len(self.users)} clients")
        await asyncio.gather(*(login(i) for i in range(len(self.users))))
        _log("opening the streams")
        await self.streams.open_all(
            functools.partial(self._listen, i) for i in range(len(self.users))
        )
        _log("adding contacts")
        sql_gate = asyncio.Semaphore(_SQL_CONCURRENCY)

        async def add_contacts(i: int) -> None:
            ids = [self.users[w].user_id for w in self.users[i].watching]
            request = presence_pb.AddContactsRequest(user_ids=ids)
            stub = presence_grpc.PresenceServiceStub(self.channels[i])
            for attempt in range(20):
                try:
                    async with sql_gate:
                        await stub.AddContacts(
                            request, metadata=self.metadata[i], timeout=CALL_TIMEOUT
                        )
                    return
                except grpc.aio.AioRpcError as error:
                    # SQLite takes one writer at a time: a busy database answers UNAVAILABLE
                    if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 19:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))

        await asyncio.gather(*(add_contacts(i) for i in range(len(self.users))))

    async def _listen(self, i: int, ready: asyncio.Event) -> None:
        ticker = self.streams.ticker
        call, state = await connect(self.channels[i], self.metadata[i], ticker)
        me = self.users[i].user_id
        tally = self.tally
        async for reply in call:
            ready.set()
            now = time.time()
            events = events_of(reply)
            if tally.counting:
                tally.messages += 1
            sequence = 0
            for event in events:
                sequence = event.sequence or sequence
                presence = event.presence_changed.presence
                # what reached a watcher, not the user's own echo
                if tally.counting and presence.note and presence.user_id != me:
                    tally.latencies.append(now - float(presence.note))
                    tally.deliveries += 1
                    if len(tally.sizes) < 2000:
                        tally.sizes.append(event.ByteSize())
            if sequence:
                await ticker.received(state, sequence)

    def issue(self, k: int) -> Any:
        i = _changer(self.users, k)
        user = self.users[i]
        if user.busy:
            return None
        self.tally.expected += user.watchers
        request = presence_pb.SetPresenceRequest(
            availability=self.states[(k // len(self.users)) % 2],
            note=_stamp(),
            update_mask=self.mask,
        )
        return self._change(i, request)

    async def _change(self, i: int, request: presence_pb.SetPresenceRequest) -> None:
        user, tally = self.users[i], self.tally
        begun = time.perf_counter()
        user.busy = True
        try:
            await self.setters[id(self.channels[i])](
                request, metadata=self.metadata[i], timeout=CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as error:
            if tally.counting:
                tally.failures.append(f"{error.code().name}: {error.details()}")
            return
        finally:
            user.busy = False
        if tally.counting:
            tally.set_latencies.append(time.perf_counter() - begun)

    async def close(self) -> None:
        await self.streams.close()

        async def logout(i: int) -> None:
            with contextlib.suppress(grpc.aio.AioRpcError):
                async with self.gate:
                    await session_grpc.SessionServiceStub(self.channels[i]).Logout(
                        session_pb.LogoutRequest(), metadata=self.metadata[i], timeout=CALL_TIMEOUT
                    )

        await asyncio.gather(*(logout(i) for i in range(len(self.users))))
        await self.pool.close()


class _Bare:
    """The bare baseline's clients: one Connect stream each, following the users it
    watches, and one Send per change (see ``bare.py``)."""

    def __init__(self, users: list[_User], servers: list[bare.BareServer], size: int) -> None:
        self.users = users
        self.tally = _Tally()
        self.pool = ChannelPool(_STREAMS_PER_CHANNEL)
        self.channels = [self.pool.channel(servers[u.side].address) for u in users]
        self.streams = Streams()
        #: the padding that makes a payload as large as procall's event
        self.padding = b" " * max(0, size - 8 - len(_stamp()))
        self.senders: dict[int, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {
            id(c): c.unary_unary(bare.SEND) for c in set(self.channels)
        }

    async def set_up(self) -> None:
        await self.streams.open_all(
            functools.partial(self._listen, i) for i in range(len(self.users))
        )

    async def _listen(self, i: int, ready: asyncio.Event) -> None:
        ticker = self.streams.ticker
        call, state = await bare.follow(self.channels[i], self.users[i].watching, ticker)
        tally = self.tally
        async for message in call:
            ready.set()
            sequence = int.from_bytes(message[:8], "big")
            if not sequence:
                continue  # the welcome
            if tally.counting:
                tally.messages += 1
                tally.latencies.append(time.time() - float(message[8:].split(b" ", 1)[0]))
                tally.deliveries += 1
            await ticker.received(state, sequence)

    def issue(self, k: int) -> Any:
        i = _changer(self.users, k)
        user = self.users[i]
        if user.busy:
            return None
        self.tally.expected += user.watchers
        return self._change(i)

    async def _change(self, i: int) -> None:
        user, tally = self.users[i], self.tally
        request = str(i).encode() + b"\n" + _stamp().encode() + self.padding
        begun = time.perf_counter()
        user.busy = True
        try:
            await self.senders[id(self.channels[i])](request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if tally.counting:
                tally.failures.append(f"{error.code().name}: {error.details()}")
            return
        finally:
            user.busy = False
        if tally.counting:
            tally.set_latencies.append(time.perf_counter() - begun)

    async def close(self) -> None:
        await self.streams.close()
        await self.pool.close()


async def _window(
    side: _Side, rate: float, seconds: float, watch: int, meter: CpuMeter | None = None
) -> dict[str, Any]:
    """Offer ``rate`` deliveries per second for ``seconds``; the window's figures."""
    tally = side.tally
    tally.reset()
    if meter is not None:
        meter.start()
    since = time.time()
    window = await drive(rate / watch, seconds, side.issue)
    await asyncio.sleep(_DRAIN_SECONDS)  # the last deliveries
    tally.counting = False
    cpu = meter.stop() if meter is not None else {}
    until = time.time()
    late = list(window.pending)  # changes still unanswered: late, not counted
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    samples = tally.latencies
    return {
        "offered_per_s": rate,
        "changes": window.sent,
        "changes_skipped": window.skipped,
        "failed_changes": len(tally.failures),
        # by status: RESOURCE_EXHAUSTED is a server past its capacity shedding load
        "failed_by_code": dict(Counter(f.split(":", 1)[0] for f in tally.failures)),
        "first_failure": tally.failures[0] if tally.failures else "",
        "deliveries": tally.deliveries,
        # share of the offered deliveries that arrived within the window (+ the drain)
        "delivered_fraction": round(tally.deliveries / tally.expected, 3) if tally.expected else 0,
        "stream_messages": tally.messages,
        "p50_ms": round(percentile(samples, 0.50) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
        "max_ms": round(max(samples, default=0.0) * 1000, 2),
        "set_p99_ms": round(percentile(tally.set_latencies, 0.99) * 1000, 2),
        "deliveries_per_s": round(tally.deliveries / seconds, 1),
        "issue_lag_p99_ms": round(percentile(window.lags, 0.99) * 1000, 2),
        "cpu_s": cpu,
        "since": since,
        "until": until,
    }


async def _warm_up(side: _Side, rate: float, watch: int, who: str) -> None:
    """Every client changes once at the main window's rate, unmeasured: a user's first
    change costs more than the next ones (stores and caches fill)."""
    _log(f"{who}: warming up")
    await _window(side, rate, max(1.0, len(side.users) * watch / rate), watch)
    await asyncio.sleep(1.0)


async def _knee(side: _Side, spec: dict[str, Any], who: str) -> dict[str, Any]:
    seconds = float(spec["ramp_seconds"])
    if seconds <= 0:
        return {"knee_per_s": 0.0, "steps": []}

    async def step(rate: float) -> Step:
        figures = await _window(side, rate, seconds, spec["watch"])
        ok = (
            figures["p99_ms"] < _KNEE_P99_MS
            and figures["delivered_fraction"] >= _KNEE_DELIVERED
            and not figures["failed_changes"]
            and figures["changes_skipped"] <= 0.01 * figures["changes"]
        )
        _log(f"{who} ramp: {rate:g}/s p99 {figures['p99_ms']} ms "
             f"delivered {figures['delivered_fraction']} {'ok' if ok else 'over'}")  # fmt: skip
        if not ok:
            await asyncio.sleep(2.0)  # let the backlog clear before the next step
        return Step(rate, figures["p99_ms"], ok)

    knee = await find_knee(step, float(spec["ramp_start"]), ceiling=float(spec["ramp_ceiling"]))
    return {
        "knee_per_s": knee.rate,
        "steps": [[s.rate, s.p99_ms, s.ok] for s in knee.steps],
    }


def _graph(spec: dict[str, Any]) -> list[_User]:
    """The users and who watches whom: each watches ``watch`` users of the other server;
    in a fan-out run everybody watches the first user, on both servers."""
    users = [_User(u["username"], u["user_id"], u["side"]) for u in spec["users"]]
    if spec.get("fanout"):
        users[0].hot = True
        users[0].watchers = len(users) - 1
        for user in users[1:]:
            user.watching = [0]
        return users
    rng = random.Random(7)
    by_side = [[i for i, u in enumerate(users) if u.side == s] for s in (0, 1)]
    for user in users:
        others = by_side[1 - user.side]
        user.watching = rng.sample(others, min(spec["watch"], len(others)))
        for w in user.watching:
            users[w].watchers += 1
    return users


def _figures(window: dict[str, Any], servers: list[str], vitals_dir: Path | None) -> dict[str, Any]:
    """A window's figures with its costs per delivery (``servers``: whose CPU is the
    server CPU)."""
    cpu: dict[str, float] = window.pop("cpu_s")
    span = (window.pop("since"), window.pop("until"))
    return window | window_costs(cpu, window["deliveries"], "delivery", servers, span, vitals_dir)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurements described by ``spec``; returns the figures."""
    users = _graph(spec)
    rate, seconds, watch = float(spec["deliveries_per_s"]), float(spec["seconds"]), spec["watch"]
    pids: dict[str, int] = spec["pids"]
    vitals_dir = Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None
    procall = _Procall(spec, users)
    await procall.set_up()
    tune_gc()
    await asyncio.sleep(1.0)
    meter = CpuMeter(pids)
    meter.start()
    await asyncio.sleep(_IDLE_SECONDS)
    idle = {n: round(100 * s / _IDLE_SECONDS, 1) for n, s in meter.stop().items()}
    await _warm_up(procall, rate, watch, "procall")
    _log(f"procall: measuring {seconds} s at {rate:g} deliveries/s")
    ucservers = [n for n in pids if n.startswith("ucserver")]
    main_window = _figures(
        await _window(procall, rate, seconds, watch, meter), ucservers, vitals_dir
    )
    sizes = procall.tally.sizes
    event_bytes = round(sum(sizes) / len(sizes)) if sizes else 200
    knee = await _knee(procall, spec, "procall")
    _log("procall: logging out")
    await procall.close()
    if not spec.get("baseline", True):
        return _procall_only(spec, users, idle, event_bytes, main_window)

    _log("bare baseline: starting two servers")
    servers = [bare.BareServer(f"bare-{n}", "presence", spec["redis_url"], None) for n in (1, 2)]
    try:
        servers[0].pair(servers[1])
        servers[1].pair(servers[0])
        baseline = _Bare(users, servers, event_bytes)
        await baseline.set_up()
        await _warm_up(baseline, rate, watch, "bare baseline")
        bare_pids = {s.name: s.pid for s in servers} | {"redis": pids.get("redis", 0)}
        _log(f"bare baseline: measuring {seconds} s at {rate:g} deliveries/s")
        bare_window = _figures(
            await _window(baseline, rate, seconds, watch, CpuMeter(bare_pids)),
            [s.name for s in servers],
            vitals_dir,
        )
        bare_knee = await _knee(baseline, spec, "bare")
        await baseline.close()
    finally:
        for server in servers:
            server.stop()
    return _result(spec, users, idle, event_bytes, main_window, knee, bare_window, bare_knee)


def _result(
    spec: dict[str, Any],
    users: list[_User],
    idle: dict[str, float],
    event_bytes: int,
    main: dict[str, Any],
    knee: dict[str, Any],
    bare_main: dict[str, Any],
    bare_knee: dict[str, Any],
) -> dict[str, Any]:
    server_us = main["server_cpu_us_per_delivery"]
    bare_us = bare_main["server_cpu_us_per_delivery"]
    bare_p99 = bare_main["p99_ms"]
    return {
        "clients": len(users),
        "watch": spec["watch"],
        "fanout": bool(spec.get("fanout")),
        # p99 beside the bare baseline's at the same offered rate
        "p99_ratio": round(main["p99_ms"] / bare_p99, 2) if bare_p99 else 0.0,
        "offered_per_s": main["offered_per_s"],
        "seconds": spec["seconds"],
        "event_bytes": event_bytes,
        **{k: v for k, v in main.items() if k not in ("offered_per_s",)},
        "baseline_server_cpu_us_per_delivery": bare_us,
        "cpu_ratio": round(server_us / bare_us, 2) if bare_us else 0.0,
        "knee_per_s": knee["knee_per_s"],
        "baseline_knee_per_s": bare_knee["knee_per_s"],
        "knee_ratio": (
            round(knee["knee_per_s"] / bare_knee["knee_per_s"], 2)
            if bare_knee["knee_per_s"]
            else 0.0
        ),
        "knee_steps": knee["steps"],
        # percent of one core per process with the clients connected and nothing changing:
        # the upkeep (session and license renewal, heartbeats) the windows include
        "idle_cpu_percent": idle,
        "baseline": {**bare_main, "knee_steps": bare_knee["steps"]},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _procall_only(
    spec: dict[str, Any],
    users: list[_User],
    idle: dict[str, float],
    event_bytes: int,
    main: dict[str, Any],
) -> dict[str, Any]:
    """The figures of a run without the bare baseline (``spec["baseline"]`` false)."""
    return {
        "clients": len(users),
        "watch": spec["watch"],
        "fanout": bool(spec.get("fanout")),
        "seconds": spec["seconds"],
        "event_bytes": event_bytes,
        **main,
        "idle_cpu_percent": idle,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "loadgen_cpus": sorted(os.sched_getaffinity(0)),
    }


def main() -> int:
    """Entry point: ``python -m procall.bench.loadgen SPEC.json``."""
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
