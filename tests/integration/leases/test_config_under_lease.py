"""Configuration writes honour the edit leases: another admin's lease refuses the write, the
holder writes under its lease, and a holder whose lease lapsed (paused) cannot write late."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.settings import Settings
from tests.helpers.center import Center, start_center
from tests.helpers.topology import PASSWORD, StartApp, auth, error_info, operator_channel
from tests.helpers.topology import login as log_in

NAME = "calls.ring_seconds"
RESOURCE = f"config/global/{NAME}"


@pytest.fixture
async def center(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> Center:
    center = await start_center(redis_url, make_settings, start_app)
    async with operator_channel(center.directory.address) as channel:
        await directory_grpc.DirectoryServiceStub(channel).CreateUser(
            directory_pb.CreateUserRequest(
                user=directory_pb2.User(
                    username="admin2", display_name="Admin Two", home_server_id="uc-1", admin=True
                ),
                password=PASSWORD,
            )
        )
    return center


class Admin:
    def __init__(self, address: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = admin_grpc.AdminServiceStub(self.channel)
        self.metadata = auth(token)

    async def set(self, value: str, version: int, lease_id: str = "") -> admin_pb2.ConfigProperty:
        reply = await self.stub.SetConfigProperty(
            admin_pb.SetConfigPropertyRequest(
                property=admin_pb2.ConfigProperty(
                    name=NAME, scope=admin_pb2.CONFIG_SCOPE_GLOBAL, value=value
                ),
                expected_version=version,
                lease_id=lease_id,
            ),
            metadata=self.metadata,
        )
        return reply.property

    async def lease(self, ttl: int) -> admin_pb2.EditLease:
        reply = await self.stub.AcquireEditLease(
            admin_pb.AcquireEditLeaseRequest(resource=RESOURCE, ttl_seconds=ttl),
            metadata=self.metadata,
        )
        return reply.lease


async def test_config_writes_honour_leases_and_fencing(center: Center) -> None:
    root = Admin(center.uc2.address, (await log_in(center.uc2.address, "root")).session_token)
    other = Admin(center.uc1.address, (await log_in(center.uc1.address, "admin2")).session_token)
    try:
        held = await root.lease(ttl=1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await other.set("25", 0)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(refused.value).reason == "LEASE_HELD"
        written = await root.set("25", 0, held.lease_id)
        assert written.version == 1 and float(written.value) == 25

        await asyncio.sleep(1.5)  # root pauses; its lease lapses; admin2 takes the property
        taken = await other.lease(ttl=30)
        assert taken.fencing > held.fencing
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await root.set("40", 1, held.lease_id)  # the paused holder's late write
        assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (await other.set("35", 1, taken.lease_id)).version == 2
    finally:
        await root.channel.close()
        await other.channel.close()
