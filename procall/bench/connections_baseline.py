"""The baseline of ``procall bench connections``: a bare grpc.aio server holding streams.

The server (a child process, as procall's servers are) has one bidirectional method
and nothing else. Each client has its own connection (as every procall client has),
opens the stream with one message, gets one reply of the size of procall's
``Welcome`` and then sends a keepalive ack now and then, as the SDK does on an idle
stream. :func:`measure_streams` returns the server's resident memory per stream: its
RSS with all streams open minus its RSS after a warm-up, divided by the streams added
in between (the same marginal measure the bench takes of the UCServers).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

__all__ = ["BaselineStreams", "measure_streams", "rss_bytes"]

_METHOD = "/bench.Connections/Connect"

_SERVER = r"""
import asyncio, gc, sys, grpc, uvloop
REPLY = b"w" * int(sys.argv[1])
async def connect(requests, context):
    first = True
    async for _ in requests:  # the opening, then acks
        if first:
            first = False
            yield REPLY
async def main():
    # procall's servers' options (runtime.server_options) that shape a connection
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", 100000),
        ("grpc.server.max_pending_requests", 100000),
        ("grpc.server.max_pending_requests_hard_limit", 100000),
        ("grpc.keepalive_time_ms", 10000),
        ("grpc.keepalive_timeout_ms", 2000),
        ("grpc.http2.ping_timeout_ms", 2000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_pings_without_data", 0),
    ], maximum_concurrent_rpcs=100000)
    handler = grpc.stream_stream_rpc_method_handler(connect)
    generic = grpc.method_handlers_generic_handler("bench.Connections", {"Connect": handler})
    server.add_generic_rpc_handlers([generic])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as procall's servers
    print(port, flush=True)
    await server.wait_for_termination()
uvloop.run(main())
"""


def rss_bytes(pid: int) -> int:
    """Resident memory of a process in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class BaselineStreams:
    """What :func:`measure_streams` measured."""

    def __init__(self, streams: int, rss_before: int, rss_after: int, warm: int) -> None:
        #: Streams held at the end.
        self.streams = streams
        #: Server RSS after the warm-up streams, and with every stream open.
        self.rss_before = rss_before
        self.rss_after = rss_after
        self.warm = warm

    @property
    def bytes_per_stream(self) -> float:
        """Server RSS per stream added after the warm-up."""
        added = self.streams - self.warm
        return (self.rss_after - self.rss_before) / added if added > 0 else 0.0


async def measure_streams(
    streams: int,
    *,
    reply_bytes: int,
    channel_options: Sequence[tuple[str, Any]],
    warm: int,
    settle: float = 2.0,
    concurrency: int = 64,
) -> BaselineStreams:
    """Open ``streams`` streams (one connection each) to a bare server; its RSS per stream.

    ``channel_options`` are the clients' channel arguments (the SDK's); ``warm`` streams
    are opened before the first RSS reading.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(reply_bytes)], stdout=subprocess.PIPE, text=True
    )
    channels: list[grpc.aio.Channel] = []
    calls: list[grpc.aio.StreamStreamCall[bytes, bytes]] = []
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        options = [*channel_options, ("grpc.use_local_subchannel_pool", 1)]
        gate = asyncio.Semaphore(concurrency)

        async def open_one() -> None:
            async with gate:
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
                channels.append(channel)
                # waits for the connection instead of failing at a refused first attempt
                call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(_METHOD)(
                    wait_for_ready=True
                )
                calls.append(call)
                await call.write(b"open")
                await call.read()

        warm = min(warm, streams)
        await asyncio.gather(*(open_one() for _ in range(warm)))
        await asyncio.sleep(settle)
        before = rss_bytes(process.pid)
        await asyncio.gather(*(open_one() for _ in range(streams - warm)))
        await asyncio.sleep(settle)
        after = rss_bytes(process.pid)
        return BaselineStreams(len(calls), before, after, warm)
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()
        process.kill()
        process.wait()
