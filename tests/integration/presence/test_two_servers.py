"""Presence across two UCServers over a real Redis and gRPC: a watcher on the other server
sees the change; contact lists page in the order added; a delegate may set someone's
presence, anyone else may not."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from tests.helpers.center import Center, set_presence
from tests.helpers.streams import EventStream
from tests.helpers.topology import auth
from tests.helpers.topology import login as log_in


async def test_presence_change_reaches_a_watcher_on_the_other_server(center: Center) -> None:
    alice = await log_in(center.uc1.address, "alice")
    bob = await log_in(center.uc2.address, "bob")
    alice_stream = EventStream(center.uc1.address, alice.session_token)
    await alice_stream.open()
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        added = await presence_grpc.PresenceServiceStub(channel).AddContacts(
            presence_pb.AddContactsRequest(user_ids=[center.users["bob"]]),
            metadata=auth(alice.session_token),
        )
    assert added.contacts[0].availability == presence_pb2.AVAILABILITY_AVAILABLE
    await asyncio.sleep(0.1)

    await set_presence(
        center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_BUSY, "in a meeting"
    )
    seen = await alice_stream.presence_of(center.users["bob"])
    assert (seen.availability, seen.note) == (presence_pb2.AVAILABILITY_BUSY, "in a meeting")
    await alice_stream.close()


async def test_contact_list_pages_in_the_order_added(center: Center) -> None:
    alice = await log_in(center.uc1.address, "alice")
    wanted = [center.users[name] for name in ("dave", "bob", "carol")]
    async with grpc.aio.insecure_channel(center.uc1.address) as channel:
        stub = presence_grpc.PresenceServiceStub(channel)
        await stub.AddContacts(
            presence_pb.AddContactsRequest(user_ids=wanted), metadata=auth(alice.session_token)
        )
        listed: list[str] = []
        token = ""
        while True:
            page = await stub.ListContacts(
                presence_pb.ListContactsRequest(page_size=2, page_token=token),
                metadata=auth(alice.session_token),
            )
            listed += [p.user_id for p in page.contacts]
            token = page.next_page_token
            if not token:
                break
        assert listed == wanted
        with pytest.raises(grpc.aio.AioRpcError) as offset:
            await stub.ListContacts(
                presence_pb.ListContactsRequest(page_token="2"), metadata=auth(alice.session_token)
            )
        assert offset.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_presence_delegation_allowed_and_denied(center: Center) -> None:
    carol = await log_in(center.uc1.address, "carol")
    bob = await log_in(center.uc2.address, "bob")
    await log_in(center.uc1.address, "alice")
    changed = await set_presence(
        center.uc1.address, carol.session_token, presence_pb2.AVAILABILITY_DO_NOT_DISTURB,
        "set by my assistant", user_id=center.users["alice"],
    )  # fmt: skip
    assert changed.availability == presence_pb2.AVAILABILITY_DO_NOT_DISTURB
    assert changed.set_by_user_id == center.users["carol"]
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await set_presence(
            center.uc2.address, bob.session_token, presence_pb2.AVAILABILITY_AWAY,
            user_id=center.users["alice"],
        )  # fmt: skip
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
