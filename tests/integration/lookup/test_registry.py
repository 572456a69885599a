"""Registration, listing, epochs and fencing, expiry: a real Lookup over a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from tests.integration.lookup.conftest import (
    TTL,
    Stub,
    beat,
    error_info,
    eventually,
    live_ids,
    server,
)


async def test_registered_servers_are_listed_with_their_info(lookup: Stub) -> None:
    epoch = await beat(lookup, server("uc-1", load=7, capacity=50, address="10.0.0.1:7001"))
    await beat(lookup, server("media-1", lookup_pb2.ROLE_MEDIA, capacity=40))
    assert epoch > 0

    reply = await lookup.ListServers(lookup_pb.ListServersRequest(), timeout=5)
    by_id = {s.server_id: s for s in reply.servers}
    assert set(by_id) == {"uc-1", "media-1"}
    uc = by_id["uc-1"]
    assert (uc.role, uc.address, uc.epoch, uc.load, uc.capacity) == (
        lookup_pb2.ROLE_UCSERVER, "10.0.0.1:7001", epoch, 7, 50,
    )  # fmt: skip
    assert uc.HasField("heartbeat_time") and uc.HasField("start_time")
    assert abs(uc.heartbeat_time.ToDatetime().timestamp() - time.time()) < 5

    assert await live_ids(lookup, lookup_pb2.ROLE_MEDIA) == {"media-1"}
    assert await live_ids(lookup, lookup_pb2.ROLE_UCSERVER) == {"uc-1"}


async def test_heartbeat_answers_epoch_and_ttl_and_renews_with_the_same_epoch(
    lookup: Stub,
) -> None:
    reply = await lookup.Heartbeat(lookup_pb.HeartbeatRequest(server=server("uc-1")), timeout=5)
    assert reply.ttl_seconds == 1
    again = await beat(lookup, server("uc-1", epoch=reply.epoch, load=3))
    assert again == reply.epoch
    listed = await lookup.ListServers(lookup_pb.ListServersRequest(), timeout=5)
    assert [s.load for s in listed.servers] == [3]


async def test_restart_gets_a_larger_epoch_and_stale_heartbeats_are_fenced(lookup: Stub) -> None:
    first = await beat(lookup, server("uc-1", load=1))
    second = await beat(lookup, server("uc-1", load=2))  # the restarted run
    assert second > first

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await beat(lookup, server("uc-1", epoch=first, load=99))
    assert failure.value.code() == grpc.StatusCode.ABORTED
    assert error_info(failure.value).reason == "STALE_VERSION"
    listed = await lookup.ListServers(lookup_pb.ListServersRequest(), timeout=5)
    assert [(s.epoch, s.load) for s in listed.servers] == [(second, 2)]

    # a stale deregistration does not remove the newer run
    await lookup.Deregister(lookup_pb.DeregisterRequest(server_id="uc-1", epoch=first), timeout=5)
    assert await live_ids(lookup) == {"uc-1"}


async def test_deregister_removes_at_once_and_the_run_cannot_come_back(lookup: Stub) -> None:
    epoch = await beat(lookup, server("uc-1"))
    await beat(lookup, server("uc-2"))
    await lookup.Deregister(lookup_pb.DeregisterRequest(server_id="uc-1", epoch=epoch), timeout=5)
    assert await live_ids(lookup) == {"uc-2"}
    # a heartbeat of the run that said goodbye (still in flight) does not resurrect it
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await beat(lookup, server("uc-1", epoch=epoch))
    assert failure.value.code() == grpc.StatusCode.ABORTED
    assert await live_ids(lookup) == {"uc-2"}
    # a new run registers normally
    assert await beat(lookup, server("uc-1")) > epoch


async def test_server_disappears_within_the_ttl_when_heartbeats_stop(lookup: Stub) -> None:
    epoch = await beat(lookup, server("uc-1"))
    other = await beat(lookup, server("uc-2"))
    for _ in range(6):  # uc-2 keeps beating, uc-1 went silent
        await asyncio.sleep(TTL / 4)
        await beat(lookup, server("uc-2", epoch=other))
    assert await live_ids(lookup) == {"uc-2"}
    # coming back after the gap with the same epoch registers again (same run, it was only slow)
    assert await beat(lookup, server("uc-1", epoch=epoch)) == epoch
    assert await live_ids(lookup) == {"uc-1", "uc-2"}


async def test_expiry_is_exact_to_the_ttl(lookup: Stub) -> None:
    await beat(lookup, server("uc-1"))
    took = await eventually(lambda: _absent(lookup, "uc-1"), timeout=3 * TTL, interval=0.02)
    assert TTL * 0.5 <= took <= TTL + 1.0  # from the answer to the heartbeat, polled


async def _absent(stub: Stub, server_id: str) -> bool:
    return server_id not in await live_ids(stub)


@pytest.mark.parametrize(
    ("info", "field"),
    [
        (server(""), "server.server_id"),
        (lookup_pb2.ServerInfo(server_id="x", role=lookup_pb2.ROLE_MEDIA), "server.address"),
        (lookup_pb2.ServerInfo(server_id="x", address="h:1"), "server.role"),
        (server("x", epoch=2**60), "server.epoch"),
        (server("has space"), "server.server_id"),
    ],
)
async def test_invalid_heartbeats_are_rejected(
    lookup: Stub, info: lookup_pb2.ServerInfo, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await beat(lookup, info)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (failure.value.details() or "")


async def test_epoch_counter_survives_redis_losing_it(lookup: Stub, redis_url: str) -> None:
    first = await beat(lookup, server("uc-1"))
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushall()  # what a restart without persistence does
    finally:
        await client.aclose()
    # the old run re-registers with its epoch; a new run still gets a larger one
    assert await beat(lookup, server("uc-1", epoch=first)) == first
    assert await beat(lookup, server("uc-2")) > first
    assert await beat(lookup, server("uc-1")) > first


async def test_lookups_sharing_redis_see_the_same_servers(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> None:
    apps = [await start_app("lookup", lookup_settings()) for _ in range(2)]
    one, two = (channels(app.address) for app in apps)
    epoch = await beat(one, server("uc-1"))
    assert await live_ids(two) == {"uc-1"}
    assert await beat(two, server("uc-1", epoch=epoch, load=5)) == epoch
    listed = await one.ListServers(lookup_pb.ListServersRequest(), timeout=5)
    assert [s.load for s in listed.servers] == [5]


async def test_an_epoch_that_was_never_issued_is_refused(lookup: Stub) -> None:
    issued = await beat(lookup, server("uc-1"))
    forged = issued + 10 * 3600 * 10**6  # ten hours of clock ahead
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await beat(lookup, server("uc-1", epoch=forged))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await lookup.Deregister(lookup_pb.DeregisterRequest(server_id="uc-1", epoch=forged), timeout=5)
    assert await live_ids(lookup) == {"uc-1"}  # neither changed anything
    assert await beat(lookup, server("uc-1")) == issued + 1
