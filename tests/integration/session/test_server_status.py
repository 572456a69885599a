"""The server status administrators see: each UCServer says which backends it reaches."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.settings import Settings
from tests.helpers.center import start_center
from tests.helpers.topology import StartApp, auth, wait_for
from tests.helpers.topology import login as log_in


async def test_a_stopped_directory_shows_in_each_ucservers_status(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(redis_url, make_settings, start_app)
    root = await log_in(center.uc2.address, "root")
    async with grpc.aio.insecure_channel(center.uc2.address) as channel:
        admin = admin_grpc.AdminServiceStub(channel)

        async def statuses() -> dict[str, admin_pb2.ServerStatus]:
            reply = await admin.ListServers(
                admin_pb.ListServersRequest(role=admin_pb2.SERVER_ROLE_UCSERVER),
                metadata=auth(root.session_token),
            )
            return {s.server_id: s for s in reply.servers}

        healthy = await statuses()
        for status in healthy.values():
            assert {d.name: d.available for d in status.dependencies} == {
                "redis": True,
                "chat database": True,
                "configuration database": True,
                "directory": True,
            }
        await center.directory.stop(0)

        async def directory_down_everywhere() -> bool:
            found = await statuses()
            return all(
                s.state == admin_pb2.SERVER_STATE_DEGRADED
                and any(d.name == "directory" and not d.available for d in s.dependencies)
                for s in found.values()
            )

        await wait_for(directory_down_everywhere, timeout=10)
        status = (await statuses())["uc-1"]
        (directory,) = [d for d in status.dependencies if d.name == "directory"]
        assert directory.detail == "new logins fail"
