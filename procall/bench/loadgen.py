"""The load generator of ``procall bench presence``: a separate process holding the clients.

``python -m procall.bench.loadgen SPEC.json`` logs in every simulated client on its
home UCServer, opens its ``Connect`` stream, makes it watch its contacts, then
changes presence at a steady rate and measures, for every delivery to a watcher
on the other server, the time from the ``SetPresence`` call to the event's
arrival. It then measures a bare grpc.aio broadcast to the same number of
streams (``baseline.py``) and prints one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.bench.baseline import measure_broadcast
from procall.bench.stats import percentile

__all__ = ["main"]

_OPTIONS = [("grpc.max_concurrent_streams", 100_000)]


class _Client:
    def __init__(self, username: str, user_id: str, address: str) -> None:
        self.username = username
        self.user_id = user_id
        self.address = address
        self.token = ""


async def _login(channels: dict[str, grpc.aio.Channel], client: _Client, password: str) -> None:
    stub = session_grpc.SessionServiceStub(channels[client.address])
    reply = await stub.Login(session_pb.LoginRequest(username=client.username, password=password))
    client.token = reply.session_token


async def _listen(
    channel: grpc.aio.Channel,
    client: _Client,
    latencies: list[float],
    counter: list[int],
    ready: asyncio.Event,
) -> None:
    call = session_grpc.SessionServiceStub(channel).Connect(
        metadata=(("authorization", f"Bearer {client.token}"),)
    )
    await call.write(session_pb.ConnectRequest(open=session_pb.OpenStream()))
    ready.set()
    async for reply in call:
        presence = reply.event.presence_changed.presence
        # only what crossed to a watcher on the other server, not the user's own echo
        if presence.note.startswith("t=") and presence.user_id != client.user_id:
            latencies.append(time.time() - float(presence.note[2:]))
            counter[0] += 1


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement described by ``spec``; returns the figures."""
    rng = random.Random(7)
    password = spec["password"]
    clients = [_Client(u["username"], u["user_id"], u["address"]) for u in spec["users"]]
    addresses = sorted({c.address for c in clients})
    channels = {a: grpc.aio.insecure_channel(a, options=_OPTIONS) for a in addresses}
    gate = asyncio.Semaphore(64)

    async def login(client: _Client) -> None:
        async with gate:
            await _login(channels, client, password)

    await asyncio.gather(*(login(c) for c in clients))
    by_server: dict[str, list[_Client]] = {a: [] for a in addresses}
    for client in clients:
        by_server[client.address].append(client)
    latencies: list[float] = []
    counter = [0]
    readies = []
    tasks = []
    for client in clients:
        ready = asyncio.Event()
        readies.append(ready)
        tasks.append(
            asyncio.create_task(
                _listen(channels[client.address], client, latencies, counter, ready)
            )
        )
    for ready in readies:
        await ready.wait()
    # every client watches `watch` clients homed on the other server
    watch = spec["watch"]
    for client in clients:
        others = [c for a, group in by_server.items() if a != client.address for c in group]
        contacts = rng.sample(others, min(watch, len(others)))
        async with gate:
            await presence_grpc.PresenceServiceStub(channels[client.address]).AddContacts(
                presence_pb.AddContactsRequest(user_ids=[c.user_id for c in contacts]),
                metadata=(("authorization", f"Bearer {client.token}"),),
            )
    await asyncio.sleep(1.0)
    latencies.clear()
    counter[0] = 0

    rate, duration = spec["changes_per_s"], spec["seconds"]
    states = [presence_pb2.AVAILABILITY_BUSY, presence_pb2.AVAILABILITY_AWAY]
    started = time.perf_counter()
    sent = 0
    pending: set[asyncio.Task[Any]] = set()
    while (elapsed := time.perf_counter() - started) < duration:
        due = int(elapsed * rate) + 1
        while sent < due:
            client = clients[sent % len(clients)]
            stub = presence_grpc.PresenceServiceStub(channels[client.address])
            call = stub.SetPresence(
                presence_pb.SetPresenceRequest(
                    availability=states[sent % 2], note=f"t={time.time():.6f}"
                ),
                metadata=(("authorization", f"Bearer {client.token}"),),
            )
            change = asyncio.ensure_future(call)
            pending.add(change)
            change.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.002)
    await asyncio.sleep(1.0)  # let the last deliveries arrive
    window = time.perf_counter() - started
    deliveries = counter[0]
    samples = list(latencies)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels.values():
        await channel.close()
    baseline = await measure_broadcast(len(clients), messages=spec["baseline_messages"])
    deliveries_per_s = deliveries / window
    return {
        "clients": len(clients),
        "changes": sent,
        "deliveries": deliveries,
        "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
        "deliveries_per_s": round(deliveries_per_s, 1),
        "baseline_deliveries_per_s": round(baseline, 1),
        "ratio": round(deliveries_per_s / baseline, 3) if baseline else 0.0,
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
