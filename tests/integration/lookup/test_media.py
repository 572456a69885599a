"""AllocateMediaServer: sticky per call, spread by load / capacity, never to dead or draining."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

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

MEDIA = lookup_pb2.ROLE_MEDIA


def media(server_id: str, *, capacity: int = 100, load: int = 0, **kw: Any) -> Any:
    return server(server_id, MEDIA, capacity=capacity, load=load, **kw)


async def allocate(stub: Stub, call_id: str, exclude: tuple[str, ...] = ()) -> str:
    reply = await stub.AllocateMediaServer(
        lookup_pb.AllocateMediaServerRequest(call_id=call_id, exclude_server_ids=exclude),
        timeout=5,
    )
    return str(reply.server.server_id)


async def release(stub: Stub, call_id: str) -> None:
    await stub.ReleaseMediaServer(lookup_pb.ReleaseMediaServerRequest(call_id=call_id), timeout=5)


async def refused(stub: Stub, call_id: str = "c") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await allocate(stub, call_id)
    return caught.value


class Beating(dict[str, Any]):
    """The servers kept registered, by id; hold ``lock`` to change one."""

    lock: asyncio.Lock


@contextlib.asynccontextmanager
async def registered(stub: Stub, *infos: Any) -> AsyncIterator[Beating]:
    """Keep the servers registered (every 0.2 s) while the block runs."""
    beating = Beating()
    beating.lock = asyncio.Lock()
    for info in infos:
        info.epoch = await beat(stub, info)
        beating[info.server_id] = info

    async def loop() -> None:
        while True:
            await asyncio.sleep(0.2)
            async with beating.lock:
                for info in list(beating.values()):
                    await beat(stub, info)

    task = asyncio.create_task(loop())
    try:
        yield beating
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_allocation_is_sticky_per_call_until_released(lookup: Stub) -> None:
    async with registered(lookup, media("m-1"), media("m-2"), media("m-3")):
        chosen = await allocate(lookup, "call-1")
        for _ in range(10):
            assert await allocate(lookup, "call-1") == chosen
        await release(lookup, "call-1")
        await release(lookup, "call-1")  # idempotent
        assert await allocate(lookup, "call-1") in {"m-1", "m-2", "m-3"}


async def test_concurrent_allocations_of_one_call_agree(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[..., Stub],
) -> None:
    stubs = [channels((await start_app("lookup", lookup_settings())).address) for _ in range(2)]
    async with registered(stubs[0], *(media(f"m-{i}") for i in range(5))):
        for n in range(10):
            answers = await asyncio.gather(*(allocate(stubs[i % 2], f"call-{n}") for i in range(8)))
            assert len(set(answers)) == 1


async def test_calls_spread_in_proportion_to_capacity(lookup: Stub) -> None:
    capacities = {"m-small": 10, "m-medium": 20, "m-large": 40}
    infos = [media(name, capacity=cap) for name, cap in capacities.items()]
    async with registered(lookup, *infos):
        counts = Counter([await allocate(lookup, f"call-{i}") for i in range(56)])
    total = sum(capacities.values())
    for name, capacity in capacities.items():
        fair = 56 * capacity / total
        assert 0.5 * fair <= counts[name] <= 1.5 * fair, counts
        assert counts[name] <= capacity


async def test_loaded_servers_are_avoided(lookup: Stub) -> None:
    infos = [media("m-busy", load=80), media("m-idle"), media("m-light", load=10)]
    async with registered(lookup, *infos):
        counts = Counter([await allocate(lookup, f"call-{i}") for i in range(50)])
    assert counts["m-busy"] == 0  # always the more utilized of any pair it is drawn in
    assert counts["m-idle"] > 0 and counts["m-light"] > 0


async def test_no_new_call_goes_to_a_dead_server_after_the_ttl(lookup: Stub) -> None:
    async with registered(lookup, media("m-1"), media("m-2")) as beating:
        on_m1 = [c for c in [f"call-{i}" for i in range(20)] if await allocate(lookup, c) == "m-1"]
        assert on_m1  # two random choices with two equal servers alternates
        del beating["m-1"]  # m-1 dies: no more heartbeats
        await eventually(lambda: _gone(lookup, "m-1"), timeout=3 * TTL)
        for i in range(30):
            assert await allocate(lookup, f"new-{i}") == "m-2"
        # a call whose server died is moved to a live one
        assert await allocate(lookup, on_m1[0]) == "m-2"


async def test_a_call_moves_off_a_server_its_ucserver_found_failed(lookup: Stub) -> None:
    async with registered(lookup, media("m-1"), media("m-2")):
        first = await allocate(lookup, "call-1")
        other = "m-2" if first == "m-1" else "m-1"
        # before any heartbeat expired: the UCServer saw the server fail
        assert await allocate(lookup, "call-1", exclude=(first,)) == other
        assert await allocate(lookup, "call-1") == other  # sticky on the new one
        with pytest.raises(grpc.aio.AioRpcError) as none_left:
            await allocate(lookup, "call-1", exclude=("m-1", "m-2"))
        assert none_left.value.code() == grpc.StatusCode.UNAVAILABLE


async def _gone(stub: Stub, server_id: str) -> bool:
    return server_id not in await live_ids(stub, MEDIA)


async def test_a_draining_server_gets_no_new_calls_but_keeps_its_own(lookup: Stub) -> None:
    async with registered(lookup, media("m-1"), media("m-2")) as beating:
        calls = {f"call-{i}": await allocate(lookup, f"call-{i}") for i in range(10)}
        kept = next(c for c, s in calls.items() if s == "m-1")
        async with beating.lock:
            drained = media("m-1", draining=True, epoch=beating["m-1"].epoch)
            beating["m-1"] = drained
            await beat(lookup, drained)  # takes effect with this heartbeat, not after a TTL
        for i in range(20):
            assert await allocate(lookup, f"new-{i}") == "m-2"
        assert await allocate(lookup, kept) == "m-1"  # sticky: the call is already there


async def test_a_restarted_server_starts_with_no_allocations(lookup: Stub) -> None:
    async with registered(lookup, media("m-1", capacity=2)) as beating:
        assert await allocate(lookup, "a") == "m-1"
        assert await allocate(lookup, "b") == "m-1"
        assert (await refused(lookup)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        async with beating.lock:
            restarted = media("m-1", capacity=2)
            restarted.epoch = await beat(lookup, restarted)  # epoch 0: a new run
            beating["m-1"] = restarted
        assert await allocate(lookup, "c") == "m-1"
        assert await allocate(lookup, "a") == "m-1"  # re-allocated on the new run


async def test_refusals_say_why(lookup: Stub) -> None:
    err = await refused(lookup)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(err).reason == "BACKEND_UNAVAILABLE"
    assert error_info(err).metadata["backend"] == "MediaServer"
    assert "no live MediaServer" in (err.details() or "")

    await beat(lookup, media("m-1", draining=True))
    err = await refused(lookup)
    assert (err.code(), error_info(err).reason) == (grpc.StatusCode.UNAVAILABLE, "SERVER_DRAINING")

    await beat(lookup, media("m-2", capacity=5, load=5))
    err = await refused(lookup)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err).reason == "LIMIT_EXCEEDED"
    assert "at capacity" in (err.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await allocate(lookup, "")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
