"""Login throttling per account and source, through a UCServer to the Directory."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.settings import Settings
from tests.helpers.center import start_center
from tests.helpers.topology import PASSWORD, StartApp
from tests.helpers.topology import error_info as reason_of
from tests.integration.client.tcp_proxy import TcpProxy


async def _login(address: str, password: str) -> session_pb.LoginResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await session_grpc.SessionServiceStub(channel).Login(
            session_pb.LoginRequest(username="alice", password=password)
        )


async def test_one_sources_wrong_passwords_do_not_lock_the_user_out_from_another(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(redis_url, make_settings, start_app)
    # the attacker's connections reach the UCServer from 127.0.0.2, the user's from 127.0.0.1
    attacker = await TcpProxy(center.uc1.address, source_host="127.0.0.2").start()
    try:
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as wrong:
                await _login(attacker.address, "guess")
            assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as locked:
            await _login(attacker.address, PASSWORD)  # locked out: even the right password
        assert locked.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(locked.value).reason == "RATE_LIMITED"
        # alice herself, from her own address, logs in at once
        reply = await _login(center.uc1.address, PASSWORD)
        assert reply.session_token
    finally:
        await attacker.close()
