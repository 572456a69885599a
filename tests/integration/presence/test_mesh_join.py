"""A UCServer that joins a running system gets its peers' deliveries from its first moment,
not only after their next topology refresh."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.settings import Settings
from tests.helpers.center import center_settings, set_presence, start_center
from tests.helpers.streams import EventStream
from tests.helpers.topology import PASSWORD, StartApp, auth, operator_channel
from tests.helpers.topology import login as log_in


def _slow_topology(settings: Settings) -> None:
    # peers poll the Lookup only every 5 s: a newcomer must not depend on that
    settings.lookup.heartbeat_interval = 5.0
    settings.lookup.heartbeat_ttl = 15.0


async def test_a_change_right_after_a_server_joined_reaches_its_watchers(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    center = await start_center(redis_url, make_settings, start_app, _slow_topology)
    async with operator_channel(center.directory.address) as channel:
        frank = await directory_grpc.DirectoryServiceStub(channel).CreateUser(
            directory_pb.CreateUserRequest(
                user=directory_pb2.User(
                    username="frank", display_name="Frank", home_server_id="uc-3"
                ),
                password=PASSWORD,
            )
        )
    alice = await log_in(center.uc1.address, "alice")

    settings = center_settings(make_settings, redis_url)
    _slow_topology(settings)
    settings.server.server_id = "uc-3"
    settings.directory.address = center.directory.address
    settings.lookup.address = center.lookup.address
    uc3 = await start_app("ucserver", settings)

    login = await log_in(uc3.address, "frank")
    assert login.session.user_id == frank.user.user_id
    stream = EventStream(uc3.address, login.session_token)
    await stream.open()
    async with grpc.aio.insecure_channel(uc3.address) as channel:
        await presence_grpc.PresenceServiceStub(channel).AddContacts(
            presence_pb.AddContactsRequest(user_ids=[center.users["alice"]]),
            metadata=auth(login.session_token),
        )
    await set_presence(
        center.uc1.address, alice.session_token, presence_pb2.AVAILABILITY_BUSY, "first change"
    )
    seen = await stream.presence_of(center.users["alice"], timeout=4)
    while seen.note != "first change":  # the state at AddContacts time may come first
        seen = await stream.presence_of(center.users["alice"], timeout=4)
    assert seen.availability == presence_pb2.AVAILABILITY_BUSY
    await stream.close()
