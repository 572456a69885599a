"""A UCServer past its capacity refuses new client calls, keeps finishing work, recovers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.settings import Settings
from tests.helpers.center import start_center
from tests.helpers.topology import StartApp, auth, wait_for
from tests.helpers.topology import error_info as reason_of
from tests.helpers.topology import login as log_in
from tests.integration.limits.test_limits import _retry_delay


@contextlib.asynccontextmanager
async def _busy_loop() -> AsyncIterator[None]:
    """Keep the event loop (every server of the test process) 0.2 s behind, as a server
    given more than its CPU can do would be."""

    async def hog() -> None:
        while True:
            time.sleep(0.2)  # blocking on purpose: the loop cannot run anything else
            await asyncio.sleep(0)

    task = asyncio.create_task(hog())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _quick_to_shed(settings: Settings) -> None:
    settings.auth.license_pool_size = 50
    settings.limits.overload_lag_ms = 50
    settings.limits.overload_window_seconds = 0.3


async def test_a_lagging_server_counts_as_overloaded_until_its_loop_catches_up(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(redis_url, make_settings, start_app, _quick_to_shed)
    shedder = center.uc1.components["shedder"]
    assert not shedder.overloaded
    async with _busy_loop():
        await wait_for(lambda: _true(shedder.overloaded), timeout=10)
    await wait_for(lambda: _true(not shedder.overloaded), timeout=10)


async def test_an_overloaded_server_refuses_new_work_with_retry_info_and_recovers(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(redis_url, make_settings, start_app, _quick_to_shed)
    address = center.uc1.address
    alice = await log_in(address, "alice")
    carol = await log_in(address, "carol")
    root = await log_in(center.uc2.address, "root")
    shedder, sampler = center.uc1.components["shedder"], center.uc1.components["lag"]
    change = presence_pb.SetPresenceRequest(
        availability=presence_pb2.AVAILABILITY_BUSY, update_mask={"paths": ["availability"]}
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = presence_grpc.PresenceServiceStub(channel)
        # past capacity (held there: the sampler that would see the loop recover is paused)
        await sampler.stop()
        shedder.record_lag(5.0)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SetPresence(change, metadata=auth(alice.session_token))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(refused.value).reason == "OVERLOADED"
        delay = _retry_delay(refused.value)
        assert delay is not None and 0.5 <= delay <= 1.5
        # an administrator can still look at the server
        await stub.GetPresence(
            presence_pb.GetPresenceRequest(user_id=center.users["alice"]),
            metadata=auth(root.session_token),
        )
        # and what finishes work is never refused: carol logs out
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=auth(carol.session_token)
        )
        # the loop is on time again: new work is taken, and the refused change was not kept
        await sampler.start()
        await wait_for(lambda: _true(not shedder.overloaded), timeout=10)
        seen = await stub.GetPresence(
            presence_pb.GetPresenceRequest(user_id=center.users["alice"]),
            metadata=auth(alice.session_token),
        )
        assert seen.presence.availability != presence_pb2.AVAILABILITY_BUSY
        await stub.SetPresence(change, metadata=auth(alice.session_token))
        seen = await stub.GetPresence(
            presence_pb.GetPresenceRequest(user_id=center.users["alice"]),
            metadata=auth(alice.session_token),
        )
        assert seen.presence.availability == presence_pb2.AVAILABILITY_BUSY
    assert shedder.shed == 1


async def _true(value: bool) -> bool:
    return value
