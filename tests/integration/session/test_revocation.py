"""Logout revokes the session's tokens on every UCServer, for servers started later too,
and on the home server even while Redis is down (the others learn it once it is back)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.launch.redis import RedisProcess
from procall.settings import Settings
from tests.helpers.center import Center, center_settings, start_center
from tests.helpers.streams import EventStream
from tests.helpers.topology import StartApp, auth, wait_for
from tests.helpers.topology import login as log_in


async def _refused(address: str, token: str, user_id: str) -> bool:
    """Whether ``address`` answers a presence read with this token UNAUTHENTICATED."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await presence_grpc.PresenceServiceStub(channel).GetPresence(
                presence_pb.GetPresenceRequest(user_id=user_id), metadata=auth(token)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return True
            raise
    return False


async def _logout(address: str, token: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=auth(token)
        )


async def _refresh(address: str, token: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await session_grpc.SessionServiceStub(channel).RefreshToken(
            session_pb.RefreshTokenRequest(), metadata=auth(token)
        )
    return reply.session_token


async def _connect_refused(address: str, token: str) -> grpc.StatusCode:
    stream = EventStream(address, token)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stream.open()
    finally:
        await stream.close()
    return failure.value.code()


async def test_after_logout_no_token_of_the_session_works_anywhere(
    center: Center, redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    alice = await log_in(center.uc1.address, "alice")
    token = alice.session_token
    refreshed = await _refresh(center.uc2.address, token)  # a second token of the session
    bob = center.users["bob"]
    assert not await _refused(center.uc2.address, token, bob)

    await _logout(center.uc1.address, token)

    # the home server refuses at once: no new stream, no call, no refresh, no second logout
    for each in (token, refreshed):
        assert await _connect_refused(center.uc1.address, each) == (grpc.StatusCode.UNAUTHENTICATED)
        assert await _refused(center.uc1.address, each, bob)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await _refresh(center.uc1.address, each)
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # the other server learns it over Redis
    await wait_for(lambda: _refused(center.uc2.address, refreshed, bob), timeout=5)
    assert await _refused(center.uc2.address, token, bob)

    # a server that was not running at the logout (or restarted since) refuses it too
    late = center_settings(make_settings, redis_url)
    late.server.server_id = "uc-3"
    late.directory.address = center.directory.address
    late.lookup.address = center.lookup.address
    uc3 = await start_app("ucserver", late)
    assert await _refused(uc3.address, token, bob)

    # a new login of the same user works as usual
    again = await log_in(center.uc1.address, "alice")
    assert not await _refused(center.uc1.address, again.session_token, bob)


@pytest.fixture
def own_redis(redis_available: None) -> Iterator[RedisProcess]:
    """A Redis of this test alone, to stop and start again (stopped in any case)."""
    with RedisProcess() as process:
        yield process


async def test_home_server_refuses_its_own_revocation_while_redis_is_down(
    own_redis: RedisProcess, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(own_redis.url, make_settings, start_app)
    alice = await log_in(center.uc1.address, "alice")
    bob = center.users["bob"]
    assert not await _refused(center.uc2.address, alice.session_token, bob)

    own_redis.kill()
    await _logout(center.uc1.address, alice.session_token)
    assert await _connect_refused(center.uc1.address, alice.session_token) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert await _refused(center.uc1.address, alice.session_token, bob)

    own_redis.restart()  # back, empty: the home server writes the revocation again
    await wait_for(lambda: _refused(center.uc2.address, alice.session_token, bob), timeout=10)
