"""Redis failures: UNAVAILABLE naming Redis within a bounded time, recovery without restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from procall.launch.redis import RedisProcess
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from tests.integration.lookup.conftest import Stub, beat, error_info, eventually, server


@pytest.fixture
def own_redis(redis_available: None) -> Iterator[RedisProcess]:
    """A Redis of this test alone, to kill and restart (stopped in any case)."""
    with RedisProcess() as process:
        yield process


async def listing(stub: Stub) -> dict[str, int]:
    reply = await stub.ListServers(lookup_pb.ListServersRequest(), timeout=5)
    return {s.server_id: s.epoch for s in reply.servers}


async def unavailable_within(stub: Stub, limit: float) -> None:
    began = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListServers(lookup_pb.ListServersRequest(), timeout=10)
    assert time.monotonic() - began < limit
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).metadata["backend"] == "Redis"
    assert "Redis is unavailable" in (caught.value.details() or "")


async def test_redis_killed_then_restarted_empty(
    own_redis: RedisProcess,
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> None:
    lookup_app = await start_app("lookup", lookup_settings(own_redis.url))
    stub = channels(lookup_app.address)
    media = []
    for name in ("m-1", "m-2"):
        settings = lookup_settings(own_redis.url)
        settings.server.server_id = name
        settings.lookup.address = lookup_app.address
        media.append(await start_app("media", settings))
    await eventually(lambda: _has(stub, {"m-1", "m-2"}))
    before = await listing(stub)
    watch = stub.WatchTopology(lookup_pb.WatchTopologyRequest())
    assert (await watch.read()).change.kind == lookup_pb2.TOPOLOGY_CHANGE_KIND_JOINED

    own_redis.kill()
    await unavailable_within(stub, limit=2.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await beat(stub, server("uc-9"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as ended:  # the watch ends; watchers watch anew
        while True:
            await asyncio.wait_for(watch.read(), timeout=5)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE

    own_redis.start()  # same port, empty
    back = time.monotonic()
    await eventually(lambda: _has(stub, {"m-1", "m-2"}), timeout=5)
    assert time.monotonic() - back < 2.0  # a couple of heartbeat intervals (0.2 s) and reconnect
    assert await listing(stub) == before  # the same runs, the same epochs
    # a server starting now still gets an epoch above every one handed out before
    assert await beat(stub, server("m-3", lookup_pb2.ROLE_MEDIA)) > max(before.values())
    for app in media:  # the registrars kept their servers running throughout
        assert app.grpc.port


async def _has(stub: Stub, ids: set[str]) -> bool:
    try:
        return ids <= set(await listing(stub))
    except grpc.aio.AioRpcError:
        return False


async def test_hung_redis_answers_unavailable_in_bounded_time(
    own_redis: RedisProcess,
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> None:
    stub = channels((await start_app("lookup", lookup_settings(own_redis.url))).address)
    await beat(stub, server("uc-1"))
    pid = own_redis.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        await unavailable_within(stub, limit=2.5)  # socket timeout 0.5 s
    finally:
        os.kill(pid, signal.SIGCONT)
    await eventually(lambda: _answers(stub))  # recovers without a restart


async def _answers(stub: Stub) -> bool:
    try:
        await listing(stub)
    except grpc.aio.AioRpcError:
        return False
    return True
