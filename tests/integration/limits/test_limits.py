"""Limits on a running UCServer: sessions, rates, message sizes, streams and idle streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.client import ClientOptions, Disconnected, ProcallClient
from procall.servers.peering import links
from procall.settings import Settings
from tests.helpers.center import Center, start_center
from tests.helpers.streams import EventStream as Stream
from tests.helpers.topology import PASSWORD, StartApp, auth
from tests.helpers.topology import error_info as reason_of
from tests.helpers.topology import login as log_in
from tests.integration.client.helpers import EventReader


def _retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info.retry_delay.ToNanoseconds() / 1e9
    return None


async def _start(
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    configure: Callable[[Settings], None],
) -> Center:
    def both(settings: Settings) -> None:
        settings.auth.license_pool_size = 50
        configure(settings)

    return await start_center(redis_url, make_settings, start_app, both)


def _open_streams(center: Center, user: str) -> int:
    return center.uc1.components["limits"].open_streams(center.users[user])  # type: ignore[attr-defined]


async def _licenses_in_use(center: Center, token: str) -> int:
    async with grpc.aio.insecure_channel(center.uc2.address) as channel:
        reply = await admin_grpc.AdminServiceStub(channel).GetLicensePool(
            admin_pb.GetLicensePoolRequest(), metadata=auth(token)
        )
    return int(reply.pool.in_use)


async def test_a_user_at_the_session_cap_is_refused_while_others_are_served(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    def cap(settings: Settings) -> None:
        settings.limits.sessions_per_user = 3

    center = await _start(redis_url, make_settings, start_app, cap)
    address = center.uc1.address
    for _ in range(3):
        await log_in(address, "alice")
    for _ in range(7):  # ten logins in all
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await log_in(address, "alice")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(refused.value).reason == "LIMIT_EXCEEDED"
        assert reason_of(refused.value).metadata["limit"] == "sessions_per_user"
    carol = await log_in(address, "carol")  # another user on the same server: served
    assert carol.is_home_server
    root = await log_in(center.uc2.address, "root")
    # alice's ten logins took three licenses; carol and root one each
    assert await _licenses_in_use(center, root.session_token) == 5


async def test_at_the_cap_a_session_whose_client_went_away_makes_room(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    def cap(settings: Settings) -> None:
        settings.limits.sessions_per_user = 2

    center = await _start(redis_url, make_settings, start_app, cap)
    address = center.uc1.address
    crashed = await log_in(address, "alice")
    stream = Stream(address, crashed.session_token)
    await stream.open()
    await stream.close()  # the client went away; its session waits for a resume
    await asyncio.sleep(0.2)
    await log_in(address, "alice")
    await log_in(address, "alice")  # at the cap: the abandoned session is ended
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await session_grpc.SessionServiceStub(channel).RefreshToken(
                session_pb.RefreshTokenRequest(), metadata=auth(crashed.session_token)
            )
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_user_over_the_request_rate_gets_retry_info_while_others_are_served(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    def rate(settings: Settings) -> None:
        settings.limits.user_rate = 1.0
        settings.limits.user_burst = 5

    center = await _start(redis_url, make_settings, start_app, rate)
    address = center.uc1.address
    alice = await log_in(address, "alice")
    carol = await log_in(address, "carol")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = presence_grpc.PresenceServiceStub(channel)
        request = presence_pb.GetPresenceRequest(user_id=center.users["carol"])
        for _ in range(5):
            await stub.GetPresence(request, metadata=auth(alice.session_token))
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await stub.GetPresence(request, metadata=auth(alice.session_token))
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(limited.value).reason == "RATE_LIMITED"
        delay = _retry_delay(limited.value)
        assert delay is not None and 0 < delay <= 1.0
        # carol has her own budget
        await stub.GetPresence(request, metadata=auth(carol.session_token))
        await asyncio.sleep(delay)
        await stub.GetPresence(request, metadata=auth(alice.session_token))


async def test_anonymous_calls_are_limited_per_source(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    def rate(settings: Settings) -> None:
        settings.limits.source_rate = 0.5
        settings.limits.source_burst = 3

    center = await _start(redis_url, make_settings, start_app, rate)
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        stub = session_grpc.SessionServiceStub(channel)
        wrong = session_pb.LoginRequest(username="alice", password="not the password")
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Login(wrong)
            assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await stub.Login(session_pb.LoginRequest(username="alice", password=PASSWORD))
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(limited.value).reason == "RATE_LIMITED"
    assert _retry_delay(limited.value) is not None


async def test_an_oversized_client_message_is_refused_and_the_server_stays_healthy(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await _start(redis_url, make_settings, start_app, lambda s: None)
    address = center.uc1.address
    alice = await log_in(address, "alice")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = presence_grpc.PresenceServiceStub(channel)
        huge = presence_pb.SetPresenceRequest(
            availability=presence_pb2.AVAILABILITY_AWAY, note="x" * (300 * 1024)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SetPresence(huge, metadata=auth(alice.session_token))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = reason_of(refused.value)
        assert info.reason == "LIMIT_EXCEEDED"
        assert info.metadata["max_bytes"] == str(256 * 1024)
        login = session_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as big_login:
            await login.Login(session_pb.LoginRequest(username="alice", password="p" * 20_000))
        assert big_login.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await stub.SetPresence(
            presence_pb.SetPresenceRequest(availability=presence_pb2.AVAILABILITY_AWAY),
            metadata=auth(alice.session_token),
        )
        assert ok.presence.availability == presence_pb2.AVAILABILITY_AWAY


async def test_a_user_cannot_open_more_streams_than_the_cap(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    def cap(settings: Settings) -> None:
        settings.limits.streams_per_user = 2

    center = await _start(redis_url, make_settings, start_app, cap)
    address = center.uc1.address
    alice = await log_in(address, "alice")
    streams = []
    try:
        for _ in range(2):
            streams.append(Stream(address, alice.session_token))  # the call starts here
            await streams[-1].open()
        streams.append(Stream(address, alice.session_token))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await streams[2].open()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(refused.value).metadata["limit"] == "streams_per_user"
        carol = await log_in(address, "carol")
        other = Stream(address, carol.session_token)
        await other.open()  # another user is not affected
        await other.close()
        await streams[1].close()
        await asyncio.sleep(0.2)
        assert _open_streams(center, "alice") == 1
        again = Stream(address, alice.session_token)
        await again.open()  # a closed stream gave its slot back
        await again.close()
    finally:
        for stream in streams:
            await stream.close()


def _idle_after_a_second(settings: Settings) -> None:
    settings.limits.stream_idle_seconds = 1.0


async def test_an_idle_stream_is_ended_and_an_acking_one_lives(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await _start(redis_url, make_settings, start_app, _idle_after_a_second)
    address = center.uc1.address
    alice = await log_in(address, "alice")
    carol = await log_in(address, "carol")
    silent = Stream(address, alice.session_token)
    talking = Stream(address, carol.session_token)
    try:
        await silent.open()
        await talking.open()
        for _ in range(8):  # 2 s: twice the idle bound
            await talking.ack(0)
            await asyncio.sleep(0.25)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                await silent.next(timeout=3)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(ended.value).reason == "STREAM_IDLE"
        # the acking stream still runs
        assert not talking.call.done()
        assert not any(isinstance(item, grpc.aio.AioRpcError) for item in talking.drained())
    finally:
        await silent.close()
        await talking.close()


async def test_the_client_sdk_keeps_a_quiet_stream_alive(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await _start(redis_url, make_settings, start_app, _idle_after_a_second)
    address = center.uc1.address
    keeping = await ProcallClient.login(
        address, "alice", PASSWORD, options=ClientOptions(stream_keepalive=0.3)
    )
    silent = await ProcallClient.login(
        address, "carol", PASSWORD, options=ClientOptions(stream_keepalive=100.0)
    )
    readers = [EventReader(keeping), EventReader(silent)]
    try:
        await asyncio.sleep(2.5)
        assert not readers[0].of(Disconnected)
        lost = readers[1].of(Disconnected)
        assert lost and "sent nothing" in lost[0].reason
    finally:
        for reader in readers:
            await reader.stop()
        await keeping.close()
        await silent.close()


@pytest.mark.parametrize("keepalive, breaks", [(0.3, False), (100.0, True)])
async def test_peer_links_keep_their_streams_alive_with_keepalives(
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    keepalive: float,
    breaks: bool,
) -> None:
    monkeypatch.setattr(links, "KEEPALIVE_SECONDS", keepalive)

    def idle(settings: Settings) -> None:
        settings.limits.stream_idle_seconds = 1.0

    await _start(redis_url, make_settings, start_app, idle)
    caplog.set_level(logging.INFO, logger=links.__name__)
    caplog.clear()
    await asyncio.sleep(2.5)
    broke = [r for r in caplog.records if "broke" in r.getMessage()]
    assert bool(broke) is breaks


async def test_the_directory_refuses_oversized_messages_too(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await _start(redis_url, make_settings, start_app, lambda s: None)
    root = await log_in(center.uc2.address, "root")
    async with grpc.aio.insecure_channel(center.directory.address) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        huge = directory_pb.CreateUserRequest(
            user=directory_pb2.User(username="big", display_name="x" * (300 * 1024))
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateUser(huge, metadata=auth(root.session_token))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(refused.value).reason == "LIMIT_EXCEEDED"
        # a big import still fits (its method has its own, larger limit): 370 KiB of
        # assignments reach the Directory, which finds the made-up users unknown
        batch = directory_pb.BatchSetHomeServersRequest(
            assignments=[
                directory_pb2.HomeServerAssignment(user_id=f"{i:048d}", home_server_id="uc-1")
                for i in range(6000)
            ]
        )
        assert batch.ByteSize() > 256 * 1024
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.BatchSetHomeServers(batch, metadata=auth(root.session_token))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
