"""The call set-up baseline: a bare grpc.aio unary echo, nothing else.

Its server runs in a child process (as procall's servers run apart from the load
generator): :func:`measure_unary` measures the time of unary round trips (one at a
time, in groups, and groups per second with concurrency). The presence and chat
baselines, of the same pattern as procall's, are in ``bare.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc

__all__ = ["UnaryRoundTrips", "measure_unary"]

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
