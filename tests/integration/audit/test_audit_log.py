"""The audit log end to end: a failed login, an administrator's CreateUser and a
delegate's SetPresence are recorded, and ListAuditEvents shows them to an
administrator only."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import pytest

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.settings import Settings
from tests.helpers.center import set_presence, start_center
from tests.helpers.topology import StartApp, auth, wait_for
from tests.helpers.topology import login as log_in


async def _audit(address: str, token: str, **filters: str) -> list[admin_pb2.AuditEvent]:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await admin_grpc.AdminServiceStub(channel).ListAuditEvents(
            admin_pb.ListAuditEventsRequest(**filters), metadata=auth(token)
        )
    return list(reply.events)


async def test_failures_admin_actions_and_delegations_are_audited_for_admins_only(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(redis_url, make_settings, start_app)
    uc1 = center.uc1.address
    # a wrong password at Login
    async with grpc.aio.insecure_channel(uc1) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await session_grpc.SessionServiceStub(channel).Login(
                session_pb.LoginRequest(username="alice", password="not-her-password")
            )
    # an administrator creates a user in the Directory
    root = await log_in(center.uc2.address, "root")
    async with grpc.aio.insecure_channel(center.directory.address) as channel:
        created = await directory_grpc.DirectoryServiceStub(channel).CreateUser(
            directory_pb.CreateUserRequest(
                user=directory_pb2.User(username="frank", display_name="Frank"),
                password="franks-password",
            ),
            metadata=auth(root.session_token),
        )
    # carol, alice's delegate, sets alice's presence; and her own (not audited)
    carol = await log_in(uc1, "carol")
    alice_id = center.users["alice"]
    await set_presence(uc1, carol.session_token, presence_pb2.AVAILABILITY_BUSY, user_id=alice_id)
    await set_presence(uc1, carol.session_token, presence_pb2.AVAILABILITY_AWAY)

    events: list[admin_pb2.AuditEvent] = []

    async def recorded() -> bool:
        nonlocal events
        events = await _audit(uc1, root.session_token)
        actions = {e.action for e in events}
        return {"auth.login_failed", "directory.CreateUser", "presence.SetPresence"} <= actions

    await wait_for(recorded)
    (failed,) = [e for e in events if e.action == "auth.login_failed"]
    assert failed.actor_user_id == "alice" and failed.subject_user_id == alice_id
    assert failed.outcome == admin_pb2.AUDIT_OUTCOME_FAILED
    assert failed.source.startswith("ipv4:127.0.0.1")
    assert "not-her-password" not in json.dumps([str(e) for e in events])
    # (the test's setup created the other users without a session: "anonymous")
    (create,) = [e for e in events if e.subject_user_id == created.user.user_id]
    assert create.action == "directory.CreateUser"
    assert create.actor_user_id == center.users["root"]
    assert create.outcome == admin_pb2.AUDIT_OUTCOME_SUCCESS
    assert json.loads(create.details)["username"] == "frank"
    assert "franks-password" not in create.details
    delegated = [e for e in events if e.action == "presence.SetPresence"]
    assert len(delegated) == 1  # carol's own presence is not an audited action
    assert delegated[0].actor_user_id == center.users["carol"]
    assert delegated[0].subject_user_id == alice_id
    # newest first, and filters
    times = [e.event_time.ToNanoseconds() for e in events]
    assert times == sorted(times, reverse=True)
    only = await _audit(uc1, root.session_token, action="directory.")
    assert {e.action for e in only} == {"directory.CreateUser", "directory.CreateDelegation"}
    mine = await _audit(uc1, root.session_token, actor_user_id=center.users["root"])
    assert {e.action for e in mine} == {"directory.CreateUser", "admin.ListAuditEvents"}
    # the admin's own listing is audited too
    await wait_for(lambda: _has(uc1, root.session_token, "admin.ListAuditEvents"))

    # a user may not read the audit log, and the refusal is recorded
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _audit(uc1, carol.session_token)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    async def refusal_recorded() -> bool:
        found = await _audit(uc1, root.session_token, action="auth.permission_denied")
        return any(
            e.actor_user_id == center.users["carol"]
            and e.outcome == admin_pb2.AUDIT_OUTCOME_DENIED
            and "AdminService/ListAuditEvents" in e.resource + e.details
            for e in found
        )

    await wait_for(refusal_recorded)


async def _has(address: str, token: str, action: str) -> bool:
    return any(e.action == action for e in await _audit(address, token, action=action))


async def test_audit_events_page_with_tokens(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(redis_url, make_settings, start_app)
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        stub = session_grpc.SessionServiceStub(channel)
        for _ in range(4):  # four failures, below the throttle
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Login(session_pb.LoginRequest(username="bob", password="nope-nope"))
    root = await log_in(center.uc2.address, "root")

    async def four() -> bool:
        found = await _audit(center.uc1.address, root.session_token, action="auth.login_failed")
        return len(found) == 4

    await wait_for(four)
    seen: list[str] = []
    token = ""
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        while True:
            reply = await admin.ListAuditEvents(
                admin_pb.ListAuditEventsRequest(
                    page_size=3, page_token=token, action="auth.login_failed"
                ),
                metadata=auth(root.session_token),
            )
            seen += [e.audit_event_id for e in reply.events]
            token = reply.next_page_token
            if not token:
                break
    assert len(seen) == len(set(seen)) == 4
