"""The shared interceptor turns domain errors into clean statuses on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from procall.errors import InvalidArgument, NotFound, ResourceExhausted
from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.servers.runtime.app import binding
from procall.servers.runtime.enforcer import NoTokens, PolicyEnforcer
from procall.servers.runtime.grpc_server import GrpcServer
from procall.servers.runtime.identity import ServiceAuthenticator
from procall.settings import ServerSettings
from tests.helpers.topology import SERVICE_CREDENTIAL, operator_channel

MEDIA_ID = "media-t"


def _as_media() -> ServiceAuthenticator:
    """Proves callers in plain mode to a MediaServer ``MEDIA_ID``."""
    return ServiceAuthenticator(
        role="media", server_id=MEDIA_ID, tls=False, credential=SERVICE_CREDENTIAL
    )


class _FailingMedia(media_grpc.MediaServiceServicer):
    """A seam: each RPC fails in one of the ways domain code fails."""

    async def GetBridge(self, request: media_pb.GetBridgeRequest, context: object) -> object:
        raise NotFound(f"bridge {request.bridge_id!r} does not exist")

    async def CreateLeg(self, request: media_pb.CreateLegRequest, context: object) -> object:
        raise InvalidArgument.field("sdp_offer", "must not be empty")

    async def GetLoad(self, request: media_pb.GetLoadRequest, context: object) -> object:
        raise ResourceExhausted("too many requests", retry_after=2.5)

    async def DeleteLeg(self, request: media_pb.DeleteLegRequest, context: object) -> object:
        raise RuntimeError("secret internal detail: password=hunter2")


@pytest.fixture
async def address() -> AsyncIterator[str]:
    server = GrpcServer(
        ServerSettings(port=0),
        [
            binding(
                _FailingMedia(),
                media_pb,
                media_grpc.add_MediaServiceServicer_to_server,
                "MediaService",
            )
        ],
        enforcer=PolicyEnforcer(NoTokens(), identify=_as_media()),
    )
    await server.start()
    yield server.address
    await server.stop(0)


def _details(error: grpc.aio.AioRpcError) -> list[object]:
    found: list[object] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                for kind in (
                    error_details_pb2.ErrorInfo,
                    error_details_pb2.BadRequest,
                    error_details_pb2.RetryInfo,
                ):
                    message = kind()
                    if detail.Unpack(message):
                        found.append(message)
    return found


async def _fail(address: str, method: str, request: object) -> grpc.aio.AioRpcError:
    async with operator_channel(address, role="ucserver", target=MEDIA_ID) as channel:
        stub = media_grpc.MediaServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await getattr(stub, method)(request, timeout=5)
    return failure.value


async def test_not_found_carries_reason_and_message(address: str) -> None:
    error = await _fail(address, "GetBridge", media_pb.GetBridgeRequest(bridge_id="b1"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "bridge 'b1' does not exist"
    (info,) = _details(error)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("NOT_FOUND", "procall.dev")


async def test_invalid_field_is_named_in_bad_request(address: str) -> None:
    error = await _fail(address, "CreateLeg", media_pb.CreateLegRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = [d for d in _details(error) if isinstance(d, error_details_pb2.BadRequest)]
    assert [(v.field, v.description) for v in bad[0].field_violations] == [
        ("sdp_offer", "must not be empty")
    ]


async def test_rate_limit_says_when_to_retry(address: str) -> None:
    error = await _fail(address, "GetLoad", media_pb.GetLoadRequest())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = [d for d in _details(error) if isinstance(d, error_details_pb2.RetryInfo)]
    assert retry[0].retry_delay.ToMilliseconds() == 2500


async def test_unexpected_failure_is_internal_without_its_text(address: str) -> None:
    error = await _fail(address, "DeleteLeg", media_pb.DeleteLegRequest(leg_id="x"))
    assert error.code() == grpc.StatusCode.INTERNAL
    text = error.details() or ""
    assert text.startswith("internal error (reference ")
    assert "hunter2" not in text and "RuntimeError" not in text and "Traceback" not in text


async def test_an_error_quoting_a_huge_request_still_arrives_whole(address: str) -> None:
    """Found by the fuzz test: a 70 kB id quoted in the message overflowed gRPC's 16 KiB of
    trailing metadata, and the caller got RESOURCE_EXHAUSTED "Stream removed" instead."""
    for huge in ("x" * 70_000, "\U0001f600" * 20_000):
        error = await _fail(address, "GetBridge", media_pb.GetBridgeRequest(bridge_id=huge))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        text = error.details() or ""
        assert text.startswith("bridge '") and text.endswith("\u2026")
        assert len(text.encode()) <= 512
        (info,) = _details(error)
        assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "NOT_FOUND"
