"""The baseline: a bare grpc.aio server broadcasting to N streams, nothing else.

It runs the server in a child process (as procall's servers run apart from the
load generator) and measures how many messages per second reach N open
server-streaming calls in the calling process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc

__all__ = ["measure_broadcast"]

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
