"""The baselines: bare grpc.aio servers (a broadcast to N streams, a unary echo), nothing else.

Each runs its server in a child process (as procall's servers run apart from the
load generator): :func:`measure_broadcast` measures how many messages per second reach
N open server-streaming calls in the calling process, :func:`measure_unary` the time of
unary round trips (one at a time, in groups, and groups per second with concurrency).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc

__all__ = ["UnaryRoundTrips", "measure_broadcast", "measure_unary"]

_METHOD = "/bench.Broadcast/Listen"

_SERVER = r"""
import asyncio, sys, grpc, uvloop
N, M = int(sys.argv[1]), int(sys.argv[2])
queues = []
finished = []
async def listen(request, context):
    queue = asyncio.Queue()
    queues.append(queue)
    if len(queues) == N:
        asyncio.get_running_loop().call_soon(started.set)
    while True:
        item = await queue.get()
        if item is None:
            finished.append(1)
            if len(finished) == N:
                done.set()
            return
        yield item
async def main():
    global started, done
    started, done = asyncio.Event(), asyncio.Event()
    # as procall's servers do (runtime.server_options): grpc's default limit of 3000
    # pending requests cancels the streams of a burst beyond it
    server = grpc.aio.server(options=[
        ("grpc.max_concurrent_streams", 100000),
        ("grpc.server.max_pending_requests", 100000),
        ("grpc.server.max_pending_requests_hard_limit", 100000),
    ])
    handler = grpc.unary_stream_rpc_method_handler(listen)
    generic = grpc.method_handlers_generic_handler("bench.Broadcast", {"Listen": handler})
    server.add_generic_rpc_handlers([generic])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await started.wait()
    for i in range(M):
        payload = b"x" * 64
        for queue in queues:
            queue.put_nowait(payload)
        if i % 10 == 0:
            await asyncio.sleep(0)
    for queue in queues:
        queue.put_nowait(None)
    await done.wait()
    await server.stop(5)
uvloop.run(main())
"""


async def measure_broadcast(streams: int, messages: int) -> float:
    """Deliveries per second of ``messages`` broadcasts to ``streams`` streams."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(streams), str(messages)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        received = [0]
        first: list[float] = []
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_concurrent_streams", 100_000)]
        ) as channel:
            call_listen: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                _METHOD
            )

            async def one() -> None:
                async for _ in call_listen(b""):
                    if not first:
                        first.append(time.perf_counter())
                    received[0] += 1

            await asyncio.gather(*(one() for _ in range(streams)))
        elapsed = time.perf_counter() - first[0] if first else 0.0
        return received[0] / elapsed if elapsed > 0 else 0.0
    finally:
        process.kill()
        process.wait()


_UNARY_METHOD = "/bench.Echo/Call"

_UNARY_SERVER = r"""
import asyncio, grpc, uvloop
async def call(request, context):
    return request
async def main():
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100000)])
    handler = grpc.unary_unary_rpc_method_handler(call)
    generic = grpc.method_handlers_generic_handler("bench.Echo", {"Call": handler})
    server.add_generic_rpc_handlers([generic])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()
uvloop.run(main())
"""


@dataclass(frozen=True)
class UnaryRoundTrips:
    """What :func:`measure_unary` measured."""

    #: seconds of each round trip made one at a time
    single: list[float]
    #: seconds of each group of round trips made one after the other
    grouped: list[float]
    #: groups per second with several workers at once
    groups_per_s: float


async def measure_unary(
    round_trips: int, group: int, groups: int, concurrency: int
) -> UnaryRoundTrips:
    """Bare grpc.aio unary round trips against an echo server in a child process.

    Returns ``round_trips`` sequential round-trip times (seconds); the times of ``groups``
    sequential groups of ``group`` round trips each (a call set-up's unary pattern); and
    groups per second when ``concurrency`` workers run ``groups`` groups at once.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", _UNARY_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                _UNARY_METHOD
            )
            payload = b"x" * 64
            for _ in range(20):  # warm-up: connection, HTTP/2 windows
                await echo(payload)
            single: list[float] = []
            for _ in range(round_trips):
                begun = time.perf_counter()
                await echo(payload)
                single.append(time.perf_counter() - begun)
            grouped: list[float] = []
            for _ in range(groups):
                begun = time.perf_counter()
                for _ in range(group):
                    await echo(payload)
                grouped.append(time.perf_counter() - begun)
            left = [groups]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    for _ in range(group):
                        await echo(payload)

            begun = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
            elapsed = time.perf_counter() - begun
        return UnaryRoundTrips(single, grouped, groups / elapsed if elapsed > 0 else 0.0)
    finally:
        process.kill()
        process.wait()
