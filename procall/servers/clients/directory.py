"""The Directory as seen by a UCServer: authentication and delegation checks over gRPC."""

from __future__ import annotations

import grpc

from procall.api.directory.v1 import directory_pb2
from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.servers.clients.rpc_errors import domain_error
from procall.session.ports import AuthenticatedUser

__all__ = ["DirectoryClient"]

_BACKEND = "the Directory"


class DirectoryClient:
    """Calls the DirectoryService; failures become domain errors naming the Directory."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self._stub = directory_grpc.DirectoryServiceStub(channel)
        self._timeout = timeout

    async def authenticate(self, username: str, password: str) -> AuthenticatedUser:
        """Check credentials (``Authenticator`` port)."""
        try:
            reply = await self._stub.Authenticate(
                directory_pb.AuthenticateRequest(username=username, password=password),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise domain_error(error, _BACKEND) from None
        user = reply.user
        return AuthenticatedUser(user.user_id, user.username, user.home_server_id, user.admin)

    async def get_user(self, user_id: str) -> directory_pb2.User:
        """One user by id."""
        try:
            reply = await self._stub.GetUser(
                directory_pb.GetUserRequest(user_id=user_id), timeout=self._timeout
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
