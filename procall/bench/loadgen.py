"""The load generator of ``procall bench presence``: a separate process holding the clients.

``python -m procall.bench.loadgen SPEC.json`` logs in every simulated client on its
home UCServer, opens its ``Connect`` stream, makes it watch its contacts, then
changes presence at a steady rate and measures, for every delivery to a watcher
on the other server, the time from just before the ``SetPresence`` call (the
change's note carries that wall-clock time) to the event's arrival in this
process: both ends read the same clock. Clients ack what they received the way
the SDK does (cumulatively, every ``ACK_EVERY`` events or ``ACK_INTERVAL``
seconds), and like real clients each has at most one change in flight: a change
due while the client's previous one is unanswered is skipped (and counted), so
an overloaded server sees its load bounded by the number of clients instead of
an ever-growing pile of calls. It then measures a bare grpc.aio broadcast to the same number of
streams (``baseline.py``) and prints one JSON object with the figures, including
the CPU time each process of the topology used during the measurement: it tells
which process limits the throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.bench.baseline import measure_broadcast
from procall.bench.stats import percentile
from procall.client import ClientOptions

__all__ = ["main"]

#: Ack like the SDK does by default.
ACK_EVERY = ClientOptions().ack_every
ACK_INTERVAL = ClientOptions().ack_interval
#: Setup calls in flight at once.
_SETUP_CONCURRENCY = 64
#: Seconds one unary call of the setup or teardown may take (logins queue behind argon2).
_CALL_TIMEOUT = 60.0
#: Contact-list writes in flight at once (the bench's SQLite takes one writer at a time).
_SQL_CONCURRENCY = 4
#: Streams per channel: grpc holds at most this many concurrent streams on one connection
#: before queueing, so the clients of a server are spread over several connections.
_STREAMS_PER_CHANNEL = 1000
_OPTIONS = [("grpc.max_concurrent_streams", 100_000)]


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} loadgen: {message}", file=sys.stderr, flush=True)


class _Client:
    def __init__(self, username: str, user_id: str, address: str, channel: grpc.aio.Channel):
        self.username = username
        self.user_id = user_id
        self.address = address
        self.channel = channel
        self.token = ""
        self.metadata: tuple[tuple[str, str], ...] = ()
        self.last_sequence = 0
        self.acked = 0
        self.ack_now = asyncio.Event()
        #: Clients watching this one (each of its changes should reach them all).
        self.watchers = 0
        #: Whether a change of this client is waiting for its answer.
        self.busy = False


class _Tally:
    """What the watchers received."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.deliveries = 0
        self.messages = 0
        self.counting = False

    def reset(self) -> None:
        self.latencies.clear()
        self.deliveries = 0
        self.messages = 0
        self.counting = True


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    # like the SDK: several pending events may come in one message
    opening = session_pb.OpenStream(accept_event_batches=True)
    await call.write(session_pb.ConnectRequest(open=opening))
    acks = asyncio.create_task(_ack(call, client))
    try:
        async for reply in call:
            ready.set()
            now = time.time()
            if tally.counting:
                tally.messages += 1
            for event in _events(reply):
                if event.sequence:
                    client.last_sequence = event.sequence
                presence = event.presence_changed.presence
                # only what crossed to a watcher on the other server, not the user's own echo
                if (
                    tally.counting
                    and presence.note.startswith("t=")
                    and presence.user_id != client.user_id
                ):
                    tally.latencies.append(now - float(presence.note[2:]))
                    tally.deliveries += 1
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


async def _gated(gate: asyncio.Semaphore, work: Any) -> Any:
    async with gate:
        return await work


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement described by ``spec``; returns the figures."""
    rng = random.Random(7)
    password = spec["password"]
    channels: dict[str, list[grpc.aio.Channel]] = {}
    counts: dict[str, int] = {}
    clients: list[_Client] = []
    for user in spec["users"]:
        address = user["address"]
        index = counts.get(address, 0)
        counts[address] = index + 1
        pool = channels.setdefault(address, [])
        if index // _STREAMS_PER_CHANNEL >= len(pool):
            # a separate connection (not a shared subchannel) for each block of clients
            options = [*_OPTIONS, ("procall.bench.connection", len(pool))]
            pool.append(grpc.aio.insecure_channel(address, options=options))
        clients.append(
            _Client(user["username"], user["user_id"], address, pool[index // _STREAMS_PER_CHANNEL])
        )
    gate = asyncio.Semaphore(_SETUP_CONCURRENCY)

    async def login(client: _Client) -> None:
        stub = session_grpc.SessionServiceStub(client.channel)
        reply = await stub.Login(
            session_pb.LoginRequest(username=client.username, password=password),
            timeout=_CALL_TIMEOUT,
        )
        client.token = reply.session_token
        client.metadata = (("authorization", f"Bearer {client.token}"),)

    _log(f"logging in {len(clients)} clients")
    await asyncio.gather(*(_gated(gate, login(c)) for c in clients))
    tally = _Tally()
    tasks: list[asyncio.Task[None]] = []
    _log("opening the streams")

    async def welcomed(ready: asyncio.Event, task: asyncio.Task[None]) -> None:
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiter.cancel()
            task.result()  # raises what ended the stream before its welcome
            raise RuntimeError("a Connect stream ended before its welcome")

    # clients come online in waves, not all in one instant (that is a reconnect storm,
    # a different measurement): at most _SETUP_CONCURRENCY streams wait for their welcome
    async def open_stream(client: _Client) -> None:
        async with gate:
            ready = asyncio.Event()
            task = asyncio.create_task(_listen(client, tally, ready))
            tasks.append(task)
            await welcomed(ready, task)

    await asyncio.gather(*(open_stream(c) for c in clients))
    # every client watches `watch` clients homed on the other server
    _log("adding contacts")
    by_server: dict[str, list[_Client]] = {}
    for client in clients:
        by_server.setdefault(client.address, []).append(client)
    watch = spec["watch"]

    async def add_contacts(client: _Client) -> None:
        others = [c for a, group in by_server.items() if a != client.address for c in group]
        contacts = rng.sample(others, min(watch, len(others)))
        for contact in contacts:
            contact.watchers += 1
        request = presence_pb.AddContactsRequest(user_ids=[c.user_id for c in contacts])
        for attempt in range(20):
            try:
                async with sql_gate:
                    await presence_grpc.PresenceServiceStub(client.channel).AddContacts(
                        request, metadata=client.metadata, timeout=_CALL_TIMEOUT
                    )
                return
            except grpc.aio.AioRpcError as error:
                # SQLite takes one writer at a time: a busy database answers UNAVAILABLE
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 19:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    sql_gate = asyncio.Semaphore(_SQL_CONCURRENCY)
    await asyncio.gather(*(add_contacts(c) for c in clients))
    await asyncio.sleep(1.0)

    pids: dict[str, int] = spec.get("pids", {})
    rate, duration = spec["changes_per_s"], spec["seconds"]
    states = [presence_pb2.AVAILABILITY_BUSY, presence_pb2.AVAILABILITY_AWAY]
    set_latencies: list[float] = []
    failures: list[str] = []

    # one stub per connection: building one per call costs more than the call itself
    setters = {
        id(channel): presence_grpc.PresenceServiceStub(channel).SetPresence
        for pool in channels.values()
        for channel in pool
    }

    async def change(client: _Client, request: presence_pb.SetPresenceRequest) -> None:
        begun = time.perf_counter()
        client.busy = True
        try:
            await setters[id(client.channel)](request, metadata=client.metadata)
        except grpc.aio.AioRpcError as error:
            if tally.counting:
                failures.append(f"{error.code().name}: {error.details()}")
            return
        finally:
            client.busy = False
        if tally.counting:
            set_latencies.append(time.perf_counter() - begun)

    _log(f"measuring for {duration} s at {rate} changes/s")
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    own_before = _own_cpu_seconds()
    tally.reset()
    started = time.perf_counter()
    sent = 0
    skipped = 0
    expected = 0
    pending: set[asyncio.Task[None]] = set()
    while (elapsed := time.perf_counter() - started) < duration:
        due = int(elapsed * rate) + 1
        while sent + skipped < due:
            client = clients[(sent + skipped) % len(clients)]
            if client.busy:
                # like a real client, one change at a time: its previous one is unanswered
                skipped += 1
                continue
            request = presence_pb.SetPresenceRequest(
                availability=states[(sent // len(clients)) % 2], note=f"t={time.time():.6f}"
            )
            task = asyncio.create_task(change(client, request))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
            expected += client.watchers
        await asyncio.sleep(0.002)
    await asyncio.sleep(1.0)  # let the last deliveries arrive
    window = time.perf_counter() - started
    tally.counting = False
    own_cpu = _own_cpu_seconds() - own_before
    cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["loadgen"] = own_cpu
    deliveries = tally.deliveries
    samples = list(tally.latencies)
    messages = tally.messages
    _log(f"done: {deliveries} deliveries in {messages} stream messages; logging out")
    for task in [*tasks, *pending]:  # changes still unanswered are late: not counted
        task.cancel()
    await asyncio.gather(*tasks, *pending, return_exceptions=True)

    async def logout(client: _Client) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await session_grpc.SessionServiceStub(client.channel).Logout(
                session_pb.LogoutRequest(), metadata=client.metadata, timeout=_CALL_TIMEOUT
            )

    await asyncio.gather(*(_gated(gate, logout(c)) for c in clients))
    for pool in channels.values():
        for channel in pool:
            await channel.close()
    baseline = 0.0
    if spec.get("baseline_messages", 0) > 0:
        _log("measuring the bare broadcast")
        baseline = await measure_broadcast(len(clients), messages=spec["baseline_messages"])
    # the changes were sent during `duration`; their deliveries are counted until 1 s
    # after, so a system that keeps up delivers the offered rate
    deliveries_per_s = deliveries / duration
    return {
        "clients": len(clients),
        "changes": sent,
        "changes_skipped": skipped,
        "failed_changes": len(failures),
        "first_failure": failures[0] if failures else "",
        "deliveries": deliveries,
        # share of the offered deliveries that arrived within the run (+1 s); under
        # overload the rest is late or coalesced away (a newer change of the same user won)
        "delivered_fraction": round(deliveries / expected, 3) if expected else 0.0,
        "stream_messages": messages,
        "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
        "max_ms": round(max(samples, default=0.0) * 1000, 3),
        "set_presence_p50_ms": round(percentile(set_latencies, 0.50) * 1000, 3),
        "set_presence_p99_ms": round(percentile(set_latencies, 0.99) * 1000, 3),
        "deliveries_per_s": round(deliveries_per_s, 1),
        "baseline_deliveries_per_s": round(baseline, 1),
        "ratio": round(deliveries_per_s / baseline, 3) if baseline else 0.0,
        # percent of one core during the measurement, per process
        "cpu_percent": {name: round(100 * s / window, 1) for name, s in cpu.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
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
