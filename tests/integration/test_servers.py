"""Every role starts in-process, reports SERVING, lists its services and stops cleanly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.topology import operator_channel

StartApp = Callable[[str, Settings], Awaitable[ServerApp]]

EXPECTED_SERVICES = {
    "directory": {"procall.api.directory.v1.DirectoryService"},
    "lookup": {"procall.mesh.lookup.v1.LookupService"},
    "ucserver": {
        "procall.api.session.v1.SessionService",
        "procall.api.presence.v1.PresenceService",
        "procall.api.chat.v1.ChatService",
        "procall.api.call.v1.CallService",
        "procall.api.journal.v1.JournalService",
        "procall.api.admin.v1.AdminService",
        "procall.mesh.peer.v1.PeerService",
    },
    "media": {"procall.mesh.media.v1.MediaService"},
}


async def _list_services(address: str) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names: set[str] = set()
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names |= {s.name for s in reply.list_services_response.service}
        return names


async def _health(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)


@pytest.mark.parametrize("role", sorted(EXPECTED_SERVICES))
async def test_role_serves_health_and_reflection_then_stops(
    role: str,
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
) -> None:
    app = await start_app(role, make_settings(redis_url))

    assert await _health(app.address) == health_pb2.HealthCheckResponse.SERVING
    for service in EXPECTED_SERVICES[role]:
        assert await _health(app.address, service) == health_pb2.HealthCheckResponse.SERVING
    listed = await _list_services(app.address)
    assert EXPECTED_SERVICES[role] <= listed
    assert "grpc.health.v1.Health" in listed

    await app.stop(0)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await _health(app.address)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo in the status")


async def test_rpc_of_a_later_release_answers_unimplemented_with_reason(
    make_settings: Callable[..., Settings],
) -> None:
    # every method of this release is served: a service "of a later release" is made here
    # the way a release declares one it does not serve yet
    from procall.mesh.media.v1 import media_service_pb2 as media_pb
    from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
    from procall.servers.runtime.app import ServerApp, binding, not_yet_served

    later = binding(
        not_yet_served(media_grpc.MediaServiceServicer),
        media_pb,
        media_grpc.add_MediaServiceServicer_to_server,
        "MediaService",
    )
    app = ServerApp("media", make_settings(), [later])
    await app.start()
    try:
        async with operator_channel(app.address, role="ucserver", target=app.server_id) as channel:
            call = channel.unary_unary("/procall.mesh.media.v1.MediaService/GetLoad")
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await call(b"", timeout=5)
    finally:
        await app.stop(0)
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "MediaService/GetLoad" in (failure.value.details() or "")
    info = _error_info(failure.value)
    assert (info.reason, info.domain) == ("NOT_IMPLEMENTED", "procall.dev")


async def test_undecodable_request_body_answers_invalid_argument(
    make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app = await start_app("media", make_settings())
    async with operator_channel(app.address, role="ucserver", target=app.server_id) as channel:
        call = channel.unary_unary("/procall.mesh.media.v1.MediaService/GetLoad")
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call(b"\xff\xff\xff\xff garbage", timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be decoded" in (failure.value.details() or "")
    assert _error_info(failure.value).reason == "MALFORMED_REQUEST"


async def test_lookup_refuses_to_start_without_redis(
    make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    from procall.launch.redis import free_port
    from procall.servers.runtime.app import StartupError

    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0")
    settings.redis.socket_timeout = 0.5
    with pytest.raises(StartupError, match=r"Redis at redis://127\.0\.0\.1:\d+/0 does not answer"):
        await start_app("lookup", settings)
