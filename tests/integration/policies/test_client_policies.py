"""Client policies with real servers: an administrator denies features to a user or to a
group; both UCServers refuse them, clients are told what they may use, a user's own policy
overrides the group's, and a stale write is refused."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.call.v1 import call_service_pb2 as call_pb
from procall.api.call.v1 import call_service_pb2_grpc as call_grpc
from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.common.v1 import client_feature_pb2 as features
from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.settings import Settings
from tests.helpers.center import Center, start_center
from tests.helpers.streams import EventStream
from tests.helpers.topology import StartApp, auth, error_info, operator_channel, wait_for
from tests.helpers.topology import login as log_in

USER = admin_pb2.POLICY_SUBJECT_KIND_USER
GROUP = admin_pb2.POLICY_SUBJECT_KIND_GROUP


@pytest.fixture
async def center(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> Center:
    return await start_center(redis_url, make_settings, start_app)


async def _set(
    admin: admin_grpc.AdminServiceAsyncStub,
    token: str,
    kind: int,
    subject: str,
    denied: list[int],
    version: int,
) -> admin_pb2.ClientPolicy:
    reply = await admin.SetClientPolicy(
        admin_pb.SetClientPolicyRequest(
            policy=admin_pb2.ClientPolicy(
                subject_kind=kind, subject_id=subject, denied_features=denied
            ),
            expected_version=version,
        ),
        metadata=auth(token),
    )
    return reply.policy


async def _refusal(call: object) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call  # type: ignore[misc]
    info = error_info(failure.value)
    return failure.value.code(), info.reason, info.metadata.get("feature", "")


async def test_denied_features_are_refused_and_clients_are_told(center: Center) -> None:
    root = await log_in(center.uc2.address, "root")
    alice = await log_in(center.uc1.address, "alice")
    bob = await log_in(center.uc2.address, "bob")
    async with grpc.aio.insecure_channel(center.uc2.address) as admin_channel, \
            grpc.aio.insecure_channel(center.uc1.address) as alice_channel, \
            grpc.aio.insecure_channel(center.uc2.address) as bob_channel:  # fmt: skip
        admin = admin_grpc.AdminServiceStub(admin_channel)
        alice_id, bob_id = center.users["alice"], center.users["bob"]
        denied = [features.CLIENT_FEATURE_CHAT, features.CLIENT_FEATURE_VIDEO]
        written = await _set(admin, root.session_token, USER, alice_id, denied, 0)
        assert written.version == 1 and list(written.denied_features) == denied

        # alice's UCServer refuses chat and video (within the policy cache's few seconds)
        chat = chat_grpc.ChatServiceStub(alice_channel)

        def create() -> object:
            return chat.CreateConversation(
                chat_pb.CreateConversationRequest(
                    kind=chat_pb2.CONVERSATION_KIND_DIRECT, member_user_ids=[bob_id]
                ),
                metadata=auth(alice.session_token),
            )

        async def refused() -> bool:
            try:
                await create()  # type: ignore[misc]
            except grpc.aio.AioRpcError as error:
                return error.code() == grpc.StatusCode.PERMISSION_DENIED
            return False

        await wait_for(refused, timeout=10)
        assert await _refusal(create()) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "FEATURE_DISABLED",
            "chat",
        )
        assert await _refusal(
            call_grpc.CallServiceStub(alice_channel).PlaceCall(
                call_pb.PlaceCallRequest(callee_user_id=bob_id, video=True),
                metadata=auth(alice.session_token),
            )
        ) == (grpc.StatusCode.PERMISSION_DENIED, "FEATURE_DISABLED", "video")
        # her client is told what it may use
        stream = EventStream(center.uc1.address, alice.session_token)
        try:
            welcome = (await stream.open()).welcome
        finally:
            await stream.close()
        allowed = set(welcome.allowed_features)
        assert features.CLIENT_FEATURE_CALLS in allowed
        assert not allowed & set(denied)

        # a group policy: bob's group may not call; bob's own policy then overrides it
        async with operator_channel(center.directory.address) as channel:
            directory = directory_grpc.DirectoryServiceStub(channel)
            group = (
                await directory.CreateGroup(
                    directory_pb.CreateGroupRequest(group=directory_pb2.Group(name="Lobby"))
                )
            ).group
            await directory.ModifyGroupMembers(
                directory_pb.ModifyGroupMembersRequest(
                    group_id=group.group_id, add_user_ids=[bob_id]
                )
            )
        await _set(
            admin, root.session_token, GROUP, group.group_id, [features.CLIENT_FEATURE_CALLS], 0
        )
        bob_calls = call_grpc.CallServiceStub(bob_channel)

        async def bob_may_not_call() -> bool:
            try:
                await bob_calls.PlaceCall(
                    call_pb.PlaceCallRequest(callee_user_id=alice_id),
                    metadata=auth(bob.session_token),
                )
            except grpc.aio.AioRpcError as error:
                return error_info(error).reason == "FEATURE_DISABLED"
            return False

        await wait_for(bob_may_not_call, timeout=10)
        await _set(admin, root.session_token, USER, bob_id, [], 0)

        async def bob_may_call_again() -> bool:
            return not await bob_may_not_call()

        await wait_for(bob_may_call_again, timeout=10)

        # a write over a stale version is refused; a user may not write policies
        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await _set(admin, root.session_token, USER, alice_id, [], 0)
        assert stale.value.code() == grpc.StatusCode.ABORTED
        with pytest.raises(grpc.aio.AioRpcError) as not_admin:
            await _set(
                admin_grpc.AdminServiceStub(alice_channel), alice.session_token, USER, bob_id, [], 1
            )
        assert not_admin.value.code() == grpc.StatusCode.PERMISSION_DENIED
        read = await admin.GetClientPolicy(
            admin_pb.GetClientPolicyRequest(subject_kind=USER, subject_id=alice_id),
            metadata=auth(root.session_token),
        )
        assert (list(read.policy.denied_features), read.policy.version) == (denied, 1)
        assert read.policy.updated_by_user_id == center.users["root"]
        listed = await admin.ListClientPolicies(
            admin_pb.ListClientPoliciesRequest(), metadata=auth(root.session_token)
        )
        assert [(p.subject_kind, p.subject_id) for p in listed.policies] == [
            (USER, alice_id) if alice_id < bob_id else (USER, bob_id),
            (USER, bob_id) if alice_id < bob_id else (USER, alice_id),
            (GROUP, group.group_id),
        ]
