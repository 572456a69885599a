"""Several administrators at once, with real UCServers, a Directory and Redis: two admins
race for one lease, the lease is seen from the other UCServer, it lapses and the other
admin takes it with a higher fencing number, the stale lease is good for nothing, and the
Directory refuses a write of a user leased by another admin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import grpc
import pytest
import redis.asyncio as aioredis

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.errors import FailedPrecondition
from procall.leases import EditLeases
from procall.settings import Settings
from procall.storage.redis.leases import RedisLeaseStore
from tests.helpers.center import Center, start_center
from tests.helpers.topology import (
    PASSWORD,
    StartApp,
    auth,
    error_info,
    operator_channel,
    wait_for,
)
from tests.helpers.topology import login as log_in

RESOURCE = "config/global/chat.max_message_bytes"


@pytest.fixture
async def center(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> Center:
    """The Center with a second administrator, "admin2" (homed on uc-1; root on uc-2)."""
    center = await start_center(redis_url, make_settings, start_app)
    async with operator_channel(center.directory.address) as channel:
        reply = await directory_grpc.DirectoryServiceStub(channel).CreateUser(
            directory_pb.CreateUserRequest(
                user=directory_pb2.User(
                    username="admin2", display_name="Admin Two", home_server_id="uc-1", admin=True
                ),
                password=PASSWORD,
            )
        )
    center.users["admin2"] = reply.user.user_id
    return center


async def _acquire(
    address: str, token: str, resource: str, ttl: int = 0
) -> admin_pb.AcquireEditLeaseResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await admin_grpc.AdminServiceStub(channel).AcquireEditLease(
            admin_pb.AcquireEditLeaseRequest(resource=resource, ttl_seconds=ttl),
            metadata=auth(token),
        )


async def test_two_admins_race_and_see_each_others_leases(center: Center) -> None:
    root = await log_in(center.uc2.address, "root")
    admin2 = await log_in(center.uc1.address, "admin2")
    results = await asyncio.gather(
        _acquire(center.uc2.address, root.session_token, RESOURCE),
        _acquire(center.uc1.address, admin2.session_token, RESOURCE),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, admin_pb.AcquireEditLeaseResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1, results
    lease = won[0].lease
    assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(lost[0])
    assert info.reason == "LEASE_HELD"
    assert info.metadata["holder_user_id"] == lease.holder_user_id
    assert info.metadata["resource"] == RESOURCE and info.metadata["since"]
    assert lease.holder_user_id in lost[0].details()
    assert lease.fencing >= 1 and lease.resource == RESOURCE

    # seen from both UCServers, with who, where and since when
    for address, token in ((center.uc1.address, admin2), (center.uc2.address, root)):
        async with grpc.aio.insecure_channel(address) as channel:
            listed = await admin_grpc.AdminServiceStub(channel).ListEditLeases(
                admin_pb.ListEditLeasesRequest(), metadata=auth(token.session_token)
            )
        assert [(x.lease_id, x.holder_user_id, x.server_id, x.fencing) for x in listed.leases] == [
            (lease.lease_id, lease.holder_user_id, lease.server_id, lease.fencing)
        ]
        assert listed.leases[0].acquire_time == lease.acquire_time

    # logged-on administrators are visible system-wide, and only they with admins_only
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        sessions = await admin_grpc.AdminServiceStub(channel).ListSessions(
            admin_pb.ListSessionsRequest(admins_only=True), metadata=auth(admin2.session_token)
        )
    assert {(s.username, s.server_id, s.admin) for s in sessions.sessions} == {
        ("root", "uc-2", True),
        ("admin2", "uc-1", True),
    }

    # both attempts are audited, with the resource
    async def audited() -> bool:
        async with grpc.aio.insecure_channel(center.uc1.address) as channel:
            reply = await admin_grpc.AdminServiceStub(channel).ListAuditEvents(
                admin_pb.ListAuditEventsRequest(action="admin.AcquireEditLease"),
                metadata=auth(admin2.session_token),
            )
        return len(reply.events) == 2 and all(
            json.loads(e.details)["resource"] == RESOURCE for e in reply.events
        )

    await wait_for(audited)


async def test_expiry_fencing_and_the_stale_lease(center: Center, redis_url: str) -> None:
    root = await log_in(center.uc2.address, "root")
    admin2 = await log_in(center.uc1.address, "admin2")
    first = (await _acquire(center.uc2.address, root.session_token, RESOURCE, ttl=1)).lease
    with pytest.raises(grpc.aio.AioRpcError) as held:
        await _acquire(center.uc1.address, admin2.session_token, RESOURCE)
    assert held.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await asyncio.sleep(1.2)  # root pauses past its lease
    second = (await _acquire(center.uc1.address, admin2.session_token, RESOURCE)).lease
    assert second.holder_user_id == center.users["admin2"] and second.server_id == "uc-1"
    assert second.fencing > first.fencing

    async with grpc.aio.insecure_channel(center.uc2.address) as channel:
        stub = admin_grpc.AdminServiceStub(channel)
        for call in (
            stub.RenewEditLease(
                admin_pb.RenewEditLeaseRequest(lease_id=first.lease_id),
                metadata=auth(root.session_token),
            ),
            stub.ReleaseEditLease(
                admin_pb.ReleaseEditLeaseRequest(lease_id=first.lease_id),
                metadata=auth(root.session_token),
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as stale:
                await call
            assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(stale.value).metadata["holder_user_id"] == second.holder_user_id

    # the configuration service's check: the paused holder's stale lease id is refused
    client = aioredis.Redis.from_url(redis_url)
    try:
        leases = EditLeases(RedisLeaseStore(client), "tests")
        with pytest.raises(FailedPrecondition) as refused:
            await leases.fencing_for(RESOURCE, root.session.user_id, first.lease_id)
        assert refused.value.reason == "LEASE_HELD"
        assert refused.value.metadata["holder_user_id"] == second.holder_user_id
        fencing = await leases.fencing_for(RESOURCE, second.holder_user_id, second.lease_id)
        assert fencing == second.fencing
    finally:
        await client.aclose()

    # the holder renews and releases; then the resource is free again
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        stub = admin_grpc.AdminServiceStub(channel)
        renewed = await stub.RenewEditLease(
            admin_pb.RenewEditLeaseRequest(lease_id=second.lease_id, ttl_seconds=120),
            metadata=auth(admin2.session_token),
        )
        assert renewed.lease.fencing == second.fencing
        assert renewed.lease.expire_time.seconds > second.expire_time.seconds
        await stub.ReleaseEditLease(
            admin_pb.ReleaseEditLeaseRequest(lease_id=second.lease_id),
            metadata=auth(admin2.session_token),
        )
        listed = await stub.ListEditLeases(
            admin_pb.ListEditLeasesRequest(), metadata=auth(admin2.session_token)
        )
        assert list(listed.leases) == []
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.AcquireEditLease(
                admin_pb.AcquireEditLeaseRequest(resource="chat/x"),
                metadata=auth(admin2.session_token),
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.AcquireEditLease(
                admin_pb.AcquireEditLeaseRequest(resource=RESOURCE, ttl_seconds=601),
                metadata=auth(admin2.session_token),
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    alice = await log_in(center.uc1.address, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await _acquire(center.uc1.address, alice.session_token, RESOURCE)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_directory_refuses_a_write_of_a_user_leased_by_another_admin(
    center: Center,
) -> None:
    root = await log_in(center.uc2.address, "root")
    admin2 = await log_in(center.uc1.address, "admin2")
    alice_id = center.users["alice"]
    await _acquire(center.uc2.address, root.session_token, f"user/{alice_id}")
    group = None
    async with grpc.aio.insecure_channel(center.directory.address) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        update = directory_pb.UpdateUserRequest(
            user=directory_pb2.User(user_id=alice_id, display_name="Alice Changed"),
            update_mask={"paths": ["display_name"]},
        )
        for call in (
            stub.UpdateUser(update, metadata=auth(admin2.session_token)),
            stub.SetPassword(
                directory_pb.SetPasswordRequest(user_id=alice_id, password="another-password-1"),
                metadata=auth(admin2.session_token),
            ),
            stub.DeleteUser(
                directory_pb.DeleteUserRequest(user_id=alice_id),
                metadata=auth(admin2.session_token),
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            info = error_info(refused.value)
            assert info.reason == "LEASE_HELD"
            assert info.metadata["holder_user_id"] == center.users["root"]
        # the holder writes; a user nobody leased is written by anyone
        changed = await stub.UpdateUser(update, metadata=auth(root.session_token))
        assert changed.user.display_name == "Alice Changed"
        bob = directory_pb2.User(user_id=center.users["bob"], display_name="Bob Changed")
        await stub.UpdateUser(
            directory_pb.UpdateUserRequest(user=bob, update_mask={"paths": ["display_name"]}),
            metadata=auth(admin2.session_token),
        )
        # groups too
        group = await stub.CreateGroup(
            directory_pb.CreateGroupRequest(group=directory_pb2.Group(name="sales")),
            metadata=auth(admin2.session_token),
        )
        await _acquire(center.uc2.address, root.session_token, f"group/{group.group.group_id}")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ModifyGroupMembers(
                directory_pb.ModifyGroupMembersRequest(
                    group_id=group.group.group_id, add_user_ids=[center.users["bob"]]
                ),
                metadata=auth(admin2.session_token),
            )
        assert error_info(refused.value).metadata["holder_user_id"] == center.users["root"]
