"""The enforcer on a real gRPC server: refusals are audited (and a broken audit log changes
no answer), the verified caller reaches the handler, and the admin CLI's administrator
login proves itself to the Directory."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import grpc
import pytest

from procall.admin._connect import AdminError, admin_target
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.audit import AuditEvent, AuditOutcome
from procall.mesh.media.v1 import media_service_pb2 as media_pb
from procall.mesh.media.v1 import media_service_pb2_grpc as media_grpc
from procall.servers.runtime.app import binding
from procall.servers.runtime.auth import ServiceIdentity, current_service
from procall.servers.runtime.enforcer import NoTokens, PolicyEnforcer
from procall.servers.runtime.grpc_server import GrpcServer
from procall.servers.runtime.identity import ServiceAuthenticator
from procall.settings import ServerSettings
from tests.helpers.topology import PASSWORD, SERVICE_CREDENTIAL, error_info, operator_channel
from tests.integration.security.conftest import Secured

MEDIA_ID = "media-t"


def _as_media() -> ServiceAuthenticator:
    """Proves callers in plain mode to a MediaServer ``MEDIA_ID``."""
    return ServiceAuthenticator(
        role="media", server_id=MEDIA_ID, tls=False, credential=SERVICE_CREDENTIAL
    )


class _Media(media_grpc.MediaServiceServicer):
    """Answers GetLoad with the caller it was given."""

    async def GetLoad(self, request: media_pb.GetLoadRequest, context: object) -> object:
        service = current_service()
        assert service == ServiceIdentity("ucserver", "tests")
        return media_pb.GetLoadResponse()


class _Log:
    def __init__(self, broken: bool = False) -> None:
        self.events: list[AuditEvent] = []
        self.broken = broken

    async def record(self, event: AuditEvent) -> None:
        if self.broken:
            raise RuntimeError("the audit store is down")
        self.events.append(event)


async def _serve(log: _Log) -> tuple[GrpcServer, str]:
    server = GrpcServer(
        ServerSettings(port=0),
        [
            binding(
                _Media(), media_pb, media_grpc.add_MediaServiceServicer_to_server, "MediaService"
            )
        ],
        enforcer=PolicyEnforcer(NoTokens(), identify=_as_media(), audit=log),
    )
    await server.start()
    return server, server.address


@pytest.fixture
async def log_and_address() -> AsyncIterator[tuple[_Log, str]]:
    log = _Log()
    server, address = await _serve(log)
    yield log, address
    await server.stop(0)


async def test_refusals_are_audited_and_the_caller_reaches_the_handler(
    log_and_address: tuple[_Log, str],
) -> None:
    log, address = log_and_address
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as stranger:
            await media_grpc.MediaServiceStub(channel).GetLoad(media_pb.GetLoadRequest())
    assert stranger.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with operator_channel(address, "lookup", MEDIA_ID) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as wrong_role:
            await media_grpc.MediaServiceStub(channel).GetLoad(media_pb.GetLoadRequest())
    assert wrong_role.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(wrong_role.value).reason == "PERMISSION_DENIED"
    async with operator_channel(address, "ucserver", MEDIA_ID) as channel:
        await media_grpc.MediaServiceStub(channel).GetLoad(media_pb.GetLoadRequest())

    assert [(e.actor, e.action, e.outcome) for e in log.events] == [
        ("anonymous", "auth.unauthenticated", AuditOutcome.DENIED),
        ("service:lookup/tests", "auth.permission_denied", AuditOutcome.DENIED),
    ]
    assert log.events[0].detail["method"] == "procall.mesh.media.v1.MediaService/GetLoad"
    assert log.events[0].source.startswith("ipv")


async def test_a_broken_audit_log_changes_no_answer() -> None:
    server, address = await _serve(_Log(broken=True))
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await media_grpc.MediaServiceStub(channel).GetLoad(media_pb.GetLoadRequest())
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)


def _admin_args(directory: str, ucserver: str, user: str) -> argparse.Namespace:
    """The options of ``procall admin --directory D --ucserver U --user USER``."""
    return argparse.Namespace(
        directory=directory,
        data_dir=None,
        admin_user=user,
        ucserver=ucserver,
        cacert=None,
        cert=None,
        key=None,
    )


async def test_the_admin_cli_logs_in_as_an_administrator(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    ucserver = secured.system.ucservers["uc-1"].address
    monkeypatch.setenv("PROCALL_PASSWORD", PASSWORD)
    directory = secured.system.directory.address
    as_root = await admin_target(_admin_args(directory, ucserver, "root"))
    async with as_root.channel() as channel:
        info = await directory_grpc.DirectoryServiceStub(channel).GetDirectoryInfo(
            svc.GetDirectoryInfoRequest()
        )
    assert info.description  # shown to administrators only
    as_alice = await admin_target(_admin_args(directory, ucserver, "alice"))
    async with as_alice.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await directory_grpc.DirectoryServiceStub(channel).SetHomeServer(
                svc.SetHomeServerRequest(user_id=secured.system.users["bob"], home_server_id="x")
            )
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    monkeypatch.setenv("PROCALL_PASSWORD", "wrong-password")
    with pytest.raises(AdminError, match="login as root .* failed: UNAUTHENTICATED"):
        await admin_target(_admin_args(directory, ucserver, "root"))
