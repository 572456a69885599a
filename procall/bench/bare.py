"""The same-pattern baseline of ``procall bench presence`` and ``chat``: two bare grpc.aio
servers doing what a procall delivery needs, and nothing else.

``python -m procall.bench.bare --work presence|chat --redis URL [--sql URL] --name NAME``
runs one server (uvloop, the same grpc options and GC set-up as procall's servers:
``gc.freeze()`` after start, threshold 50,000). It prints its port, then reads the
address of its peer (the other bare server) from stdin. One generic service,
``bare.Relay``, carries raw bytes (no protobuf; the payload has the size of the event
procall sends, measured in the same run):

- ``Connect`` (bidirectional stream, one per client): the first message names, as a
  JSON list, the keys the client follows (presence: the 10 users it watches; chat: its
  own user). Each event is written as an 8-byte per-stream sequence number plus the
  payload; the client acks cumulatively with an 8-byte sequence number, at the same
  interval as procall's clients (the server keeps the last ack, as a replay buffer
  would).
- ``Send`` (unary, ``key \\n payload``): one per change or message. The server does the
  scenario's store round trips, queues the event on its one stream to the peer and
  answers; the peer writes it to every local stream following ``key`` (the sender
  server's own followers get it too, and this pattern has none; the sender's own stream
  gets no echo: it knows what it sent). Presence: one Redis round trip (``SET`` of the
  user's state). Chat: one Redis round trip (``INCR`` of the key's sequence: one key
  per member, so per 1:1 conversation and direction) and one SQL row inserted through
  SQLAlchemy in the scenario's database, committed in groups (the rows that arrive
  while a commit runs go in the next one, like procall's group commit); the call is
  answered once its row is committed.
- ``Peer`` (client stream from the other bare server): the forwarded events, one
  message each, delivered to the local followers of their key.

With ``PROCALL_VITALS_DIR`` set the server records its loop lag and GC pauses as
procall's servers do (``procall.servers.runtime.vitals``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import uvloop

from procall.bench.harness import AckState, AckTicker

__all__ = ["CONNECT", "SEND", "BareServer", "follow", "main"]

_SERVICE = "bare.Relay"
#: Method paths, for the load generator's clients.
CONNECT = f"/{_SERVICE}/Connect"
SEND = f"/{_SERVICE}/Send"
_OPTIONS = [
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
]


class _Stream:
    """One client's Connect stream: its queue of encoded events and its sequence."""

    __slots__ = ("acked", "queue", "sequence")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.sequence = 0
        self.acked = 0

    def push(self, payload: bytes) -> None:
        self.sequence += 1
        self.queue.put_nowait(self.sequence.to_bytes(8, "big") + payload)


class _Relay:
    def __init__(self, work: str, redis_url: str, sql_url: str | None) -> None:
        import redis.asyncio as aioredis

        self.work = work
        self.redis = aioredis.Redis.from_url(redis_url)
        self.followers: dict[bytes, list[_Stream]] = {}
        self.peer: grpc.aio.StreamUnaryCall[bytes, bytes] | None = None
        self.outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self.peer_address = ""
        self.sql: _GroupCommit | None = _GroupCommit(sql_url) if sql_url else None

    async def connect(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        opening = await anext(requests)
        stream = _Stream()
        keys = [str(k).encode() for k in json.loads(opening)]
        for key in keys:
            self.followers.setdefault(key, []).append(stream)

        async def read_acks() -> None:
            async for ack in requests:
                stream.acked = int.from_bytes(ack, "big")

        acks = asyncio.create_task(read_acks())
        try:
            yield b"\0" * 8  # the welcome: sequence 0
            while True:
                yield await stream.queue.get()
        finally:
            acks.cancel()
            for key in keys:
                self.followers[key].remove(stream)

    async def send(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        key, _, payload = request.partition(b"\n")
        if self.work == "presence":
            await self.redis.set(b"bare:presence:" + key, payload)
        else:
            await self.redis.incr(b"bare:sequence:" + key)
            assert self.sql is not None
            await self.sql.insert(key, payload)
        if self.peer is None:  # one stream to the peer, fed by a queue (one writer)
            channel = grpc.aio.insecure_channel(self.peer_address, options=_OPTIONS)
            peer: grpc.aio.StreamUnaryMultiCallable[bytes, bytes]
            peer = channel.stream_unary(f"/{_SERVICE}/Peer")
            self.peer = peer(self._to_peer())
        self.outgoing.put_nowait(request)
        self.deliver(key, payload)
        return b""

    async def _to_peer(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.outgoing.get()

    async def from_peer(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        async for request in requests:
            key, _, payload = request.partition(b"\n")
            self.deliver(key, payload)
        return b""

    def deliver(self, key: bytes, payload: bytes) -> None:
        for stream in self.followers.get(key, ()):
            stream.push(payload)


class _GroupCommit:
    """Rows inserted through SQLAlchemy, the ones waiting during a commit in the next."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(url)
        self.metadata = MetaData()
        self.table = Table(
            "bare_messages",
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("recipient", String(64), nullable=False),
            Column("body", LargeBinary, nullable=False),
        )
        self.waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self.wake = asyncio.Event()

    async def start(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)
        asyncio.get_running_loop().create_task(self._write())

    async def insert(self, recipient: bytes, body: bytes) -> None:
        done = asyncio.get_running_loop().create_future()
        self.waiting.append(({"recipient": recipient.decode(), "body": body}, done))
        self.wake.set()
        await done

    async def _write(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.waiting = self.waiting, []
            if not batch:
                continue
            try:
                async with self.engine.begin() as connection:
                    await connection.execute(self.table.insert(), [row for row, _ in batch])
            except Exception as exc:  # every waiting call fails with it
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)


async def _serve(args: argparse.Namespace) -> None:
    from procall.servers.runtime.vitals import start_vitals

    relay = _Relay(args.work, args.redis, args.sql)
    if relay.sql is not None:
        await relay.sql.start()
    server = grpc.aio.server(options=_OPTIONS)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Connect": grpc.stream_stream_rpc_method_handler(relay.connect),
        "Send": grpc.unary_unary_rpc_method_handler(relay.send),
        "Peer": grpc.stream_unary_rpc_method_handler(relay.from_peer),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(_SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    start_vitals(args.name)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as procall's servers (procall serve)
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    relay.peer_address = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
    await loop.run_in_executor(None, sys.stdin.readline)  # an empty line or EOF: stop
    await server.stop(1)


async def follow(
    channel: grpc.aio.Channel, keys: list[int], ticker: AckTicker
) -> tuple[grpc.aio.StreamStreamCall[bytes, bytes], AckState]:
    """A client's Connect stream following ``keys``, its acks tracked on ``ticker``."""
    call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(CONNECT)()
    await call.write(json.dumps(keys).encode())

    async def ack(sequence: int) -> None:
        await call.write(sequence.to_bytes(8, "big"))

    return call, ticker.add(ack)


class BareServer:
    """One bare server process, started by the load generator."""

    def __init__(self, name: str, work: str, redis_url: str, sql_url: str | None) -> None:
        command = [sys.executable, "-m", "procall.bench.bare", "--work", work]
        command += ["--redis", redis_url, "--name", name]
        if sql_url:
            command += ["--sql", sql_url]
        self.name = name
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.process.kill()
            raise RuntimeError(f"the bare server {name} did not start")
        self.address = f"127.0.0.1:{line}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def pair(self, peer: BareServer) -> None:
        """Tell this server where its peer listens."""
        assert self.process.stdin is not None
        self.process.stdin.write(peer.address + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """Stop the server (at most a few seconds)."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def main() -> int:
    """Entry point: ``python -m procall.bench.bare ...`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="procall.bench.bare")
    parser.add_argument("--work", choices=("presence", "chat"), required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--sql")
    parser.add_argument("--name", required=True)
    uvloop.run(_serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
