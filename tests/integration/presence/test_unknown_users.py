"""Presence reads and contact lists refuse users that do not exist (NOT_FOUND naming them)
instead of answering "offline"; contacts can be added by username."""

from __future__ import annotations

import uuid

import grpc
import pytest

from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from tests.helpers.center import Center
from tests.helpers.topology import auth
from tests.helpers.topology import error_info as reason_of
from tests.helpers.topology import login as log_in


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call  # type: ignore[misc]
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    return failure.value


async def test_reads_of_an_unknown_user_are_not_found(center: Center) -> None:
    alice = await log_in(center.uc1.address, "alice")
    nobody = str(uuid.uuid4())
    async with grpc.aio.insecure_channel(center.uc2.address) as channel:  # any server
        stub = presence_grpc.PresenceServiceStub(channel)
        error = await _refused(
            stub.GetPresence(
                presence_pb.GetPresenceRequest(user_id=nobody), metadata=auth(alice.session_token)
            )
        )
        assert nobody in (error.details() or "")
        assert reason_of(error).metadata["user_id"] == nobody
        error = await _refused(
            stub.BatchGetPresence(
                presence_pb.BatchGetPresenceRequest(user_ids=[center.users["bob"], "nobody"]),
                metadata=auth(alice.session_token),
            )
        )
        assert reason_of(error).metadata["user_id"] == "nobody"
        known = await stub.GetPresence(
            presence_pb.GetPresenceRequest(user_id=center.users["bob"]),
            metadata=auth(alice.session_token),
        )
        assert known.presence.user_id == center.users["bob"]


async def test_contacts_refuse_unknown_users_and_take_usernames(center: Center) -> None:
    alice = await log_in(center.uc1.address, "alice")
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        stub = presence_grpc.PresenceServiceStub(channel)
        error = await _refused(
            stub.AddContacts(
                presence_pb.AddContactsRequest(user_ids=[center.users["bob"], "nobody"]),
                metadata=auth(alice.session_token),
            )
        )
        assert reason_of(error).metadata["user_id"] == "nobody"
        error = await _refused(
            stub.AddContacts(
                presence_pb.AddContactsRequest(usernames=["carol", "no-such-name"]),
                metadata=auth(alice.session_token),
            )
        )
        assert "no-such-name" in (error.details() or "")
        assert reason_of(error).metadata["username"] == "no-such-name"
        listed = await stub.ListContacts(
            presence_pb.ListContactsRequest(), metadata=auth(alice.session_token)
        )
        assert list(listed.contacts) == []  # a refused request adds nothing

        added = await stub.AddContacts(
            presence_pb.AddContactsRequest(
                user_ids=[center.users["dave"]], usernames=["bob", "Carol"]
            ),
            metadata=auth(alice.session_token),
        )
        expected = [center.users[name] for name in ("dave", "bob", "carol")]
        assert [p.user_id for p in added.contacts] == expected
        listed = await stub.ListContacts(
            presence_pb.ListContactsRequest(), metadata=auth(alice.session_token)
        )
        assert [p.user_id for p in listed.contacts] == expected
