"""The Directory as seen by a UCServer: authentication and delegation checks over gRPC."""

from __future__ import annotations

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.errors import Unavailable
from procall.routing.models import HomeAssignment
from procall.servers.runtime.channels import MeshChannels, quick_reconnect
from procall.servers.runtime.identity import role_target
from procall.servers.upstream.errors import domain_error
from procall.session.ports import AuthenticatedUser

__all__ = ["DirectoryClient", "GrpcHomeDirectory"]

_BACKEND = "the Directory"


class DirectoryClient:
    """Calls the DirectoryService; failures become domain errors naming the Directory."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self._stub = directory_grpc.DirectoryServiceStub(channel)
        self._timeout = timeout

    async def authenticate(
        self, username: str, password: str, source: str = ""
    ) -> AuthenticatedUser:
        """Check credentials of a login from ``source`` (``Authenticator`` port)."""
        try:
            reply = await self._stub.Authenticate(
                directory_pb.AuthenticateRequest(
                    username=username, password=password, source=source
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, _BACKEND) from None
        user = reply.user
        return AuthenticatedUser(user.user_id, user.username, user.home_server_id, user.admin)

    async def users_homed_on(self, server_id: str) -> list[tuple[str, str]]:
        """``(user id, username)`` of every user homed on ``server_id`` (all pages)."""
        found: list[tuple[str, str]] = []
        token = ""
        while True:
            try:
                reply = await self._stub.ListUsers(
                    directory_pb.ListUsersRequest(
                        page_size=1000, page_token=token, home_server_id=server_id
                    ),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as error:
                raise domain_error(error, _BACKEND) from None
            found += [(u.user_id, u.username) for u in reply.users]
            token = reply.next_page_token
            if not token:
                return found

    async def set_home_servers(self, assignments: dict[str, str]) -> None:
        """Assign ``{user id: home server id}``, all or nothing."""
        try:
            await self._stub.BatchSetHomeServers(
                directory_pb.BatchSetHomeServersRequest(
                    assignments=[
                        directory_pb2.HomeServerAssignment(user_id=u, home_server_id=s)
                        for u, s in assignments.items()
                    ]
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, _BACKEND) from None

    async def get_user(self, user_id: str) -> directory_pb2.User:
        """One user by id."""
        try:
            reply = await self._stub.GetUser(
                directory_pb.GetUserRequest(user_id=user_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, _BACKEND) from None
        return reply.user

    async def get_user_by_name(self, username: str) -> directory_pb2.User:
        """One user by username (``NotFound`` when there is none)."""
        try:
            reply = await self._stub.GetUser(
                directory_pb.GetUserRequest(username=username), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, _BACKEND) from None
        return reply.user

    async def may_act_for(
        self,
        actor_user_id: str,
        principal_user_id: str,
        scope: directory_pb2.DelegationScope.ValueType,
    ) -> bool:
        """Whether the Directory grants ``actor`` the ``scope`` delegation of ``principal``."""
        try:
            reply = await self._stub.CheckDelegation(
                directory_pb.CheckDelegationRequest(
                    actor_user_id=actor_user_id, principal_user_id=principal_user_id, scope=scope
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, _BACKEND) from None
        return bool(reply.allowed)

    async def pickup_groups_of(self, user_id: str) -> list[directory_pb2.PickupGroup]:
        """The pick-up groups ``user_id`` belongs to."""
        try:
            reply = await self._stub.ListPickupGroups(
                directory_pb.ListPickupGroupsRequest(user_id=user_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, _BACKEND) from None
        return list(reply.pickup_groups)


class GrpcHomeDirectory:
    """The Directory's ``GetUser`` as a ``procall.routing.ports.HomeDirectory``.

    A user the Directory does not know is ``None``; any other failure (down,
    slower than ``timeout``) is ``Unavailable`` naming the Directory.
    """

    def __init__(self, address: str, *, channels: MeshChannels, timeout: float = 2.0) -> None:
        self._channel = channels.channel(
            address,
            role_target("directory"),
            quick_reconnect(1000),  # back within a second of the Directory returning
        )
        self._stub = directory_grpc.DirectoryServiceStub(self._channel)
        self._timeout = timeout

    async def find_home(self, *, user_id: str = "", username: str = "") -> HomeAssignment | None:
        """The user's home assignment according to the Directory."""
        request = (
            directory_pb.GetUserRequest(user_id=user_id)
            if user_id
            else directory_pb.GetUserRequest(username=username)
        )
        try:
            response = await self._stub.GetUser(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise Unavailable.backend("Directory") from err
        user = response.user
        return HomeAssignment(user.user_id, user.username, user.home_server_id)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
