"""The Center of the session and presence integration tests: a Directory, a Lookup and
UCServers uc-1 and uc-2 on a real Redis, with six users and one delegation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.topology import (
    PASSWORD,
    StartApp,
    auth,
    fast_settings,
    operator_channel,
    wait_for,
)

__all__ = ["Center", "center_settings", "set_presence", "start_center"]


@dataclass
class Center:
    """The running servers and the users created in the Directory."""

    directory: ServerApp
    lookup: ServerApp
    uc1: ServerApp
    uc2: ServerApp
    users: dict[str, str]  # username -> user_id


def center_settings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    """Quick-test settings with a small license pool (the pool tests exhaust it)."""
    settings = fast_settings(make_settings, redis_url)
    settings.auth.license_pool_size = 4
    return settings


async def start_center(
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    configure: Callable[[Settings], None] = lambda s: None,
) -> Center:
    """Start the Directory, a Lookup and UCServers uc-1 and uc-2 (``configure`` adjusts
    every server's settings) and create the users; returns once both are linked."""
    directory_settings = center_settings(make_settings, redis_url)
    configure(directory_settings)
    directory = await start_app("directory", directory_settings)
    lookup_settings = center_settings(make_settings, redis_url)
    configure(lookup_settings)
    lookup_settings.directory.address = directory.address
    lookup = await start_app("lookup", lookup_settings)
    apps = []
    for server_id in ("uc-1", "uc-2"):
        settings = center_settings(make_settings, redis_url)
        configure(settings)
        settings.server.server_id = server_id
        settings.directory.address = directory.address
        settings.lookup.address = lookup.address
        apps.append(await start_app("ucserver", settings))
    users: dict[str, str] = {}
    async with operator_channel(directory.address) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        for name, home in [("alice", "uc-1"), ("bob", "uc-2"), ("carol", "uc-1"),
                           ("dave", "uc-2"), ("erin", "uc-1"), ("root", "uc-2")]:  # fmt: skip
            reply = await stub.CreateUser(
                directory_pb.CreateUserRequest(
                    user=directory_pb2.User(
                        username=name,
                        display_name=name.title(),
                        home_server_id=home,
                        admin=name == "root",
                    ),
                    password=PASSWORD,
                )
            )
            users[name] = reply.user.user_id
        await stub.CreateDelegation(
            directory_pb.CreateDelegationRequest(
                delegation=directory_pb2.Delegation(
                    principal_user_id=users["alice"],
                    delegate_user_id=users["carol"],
                    scopes=[directory_pb2.DELEGATION_SCOPE_PRESENCE_SET],
                )
            )
        )

    async def both_registered() -> bool:
        async with operator_channel(lookup.address, target="lookup") as channel:
            reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
                lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
            )
        return {s.server_id for s in reply.servers} == {"uc-1", "uc-2"}

    await wait_for(both_registered)
    await asyncio.sleep(0.6)  # the peer mesh refreshes its topology every heartbeat interval
    return Center(directory, lookup, apps[0], apps[1], users)


async def set_presence(
    address: str, token: str, availability: int, note: str = "", user_id: str = ""
) -> presence_pb2.Presence:
    """Set a user's presence (``user_id``: someone else's, as a delegate)."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await presence_grpc.PresenceServiceStub(channel).SetPresence(
            presence_pb.SetPresenceRequest(user_id=user_id, availability=availability, note=note),
            metadata=auth(token),
        )
    return reply.presence
