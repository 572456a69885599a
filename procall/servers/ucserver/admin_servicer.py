"""AdminService: system-wide sessions, servers and the license pool (thin).

Every RPC needs an admin session. Configuration, edit leases, moving users,
draining and the audit log belong to a later release and answer UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.session.v1 import session_pb2
from procall.errors import InvalidArgument, PermissionDenied, Unimplemented
from procall.mesh.lookup.v1 import lookup_pb2
from procall.servers.codecs.time import timestamp
from procall.servers.ucserver.session_servicer import claims_from
from procall.servers.upstream.clients import UpstreamClients
from procall.session.manager import SessionManager
from procall.session.tokens import SessionClaims
from procall.storage.redis.licenses import LicensePool
from procall.storage.redis.sessions import RedisSessionRegistry

__all__ = ["AdminServicer"]

Context = grpc.aio.ServicerContext[object, object]

_ROLES = {
    lookup_pb2.ROLE_DIRECTORY: admin_pb2.SERVER_ROLE_DIRECTORY,
    lookup_pb2.ROLE_LOOKUP: admin_pb2.SERVER_ROLE_LOOKUP,
    lookup_pb2.ROLE_UCSERVER: admin_pb2.SERVER_ROLE_UCSERVER,
    lookup_pb2.ROLE_MEDIA: admin_pb2.SERVER_ROLE_MEDIA,
}


def _later(method: str) -> Unimplemented:
    return Unimplemented(
        f"procall.api.admin.v1.AdminService/{method} is not implemented in this release of procall"
    )


class AdminServicer(admin_grpc.AdminServiceServicer):
    """The admin views a UCServer can answer from the shared state."""

    def __init__(
        self,
        sessions: SessionManager[session_pb2.Event],
        directory: RedisSessionRegistry,
        licenses: LicensePool,
        clients: UpstreamClients,
    ) -> None:
        self._sessions = sessions
        self._directory = directory
        self._licenses = licenses
        self._clients = clients

    def _admin(self, context: Context) -> SessionClaims:
        claims = claims_from(context, self._sessions)
        if not claims.admin:
            raise PermissionDenied("this needs an administrator's session")
        return claims

    async def ListSessions(
        self, request: admin_pb.ListSessionsRequest, context: Context
    ) -> admin_pb.ListSessionsResponse:
        self._admin(context)
        size = request.page_size or 100
        if not 0 < size <= 1000:
            raise InvalidArgument.field("page_size", "must be between 0 and 1000")
        try:
            start = int(request.page_token or "0")
        except ValueError:
            raise InvalidArgument.field("page_token", "is not a token from this API") from None
        found = [
            s
            for s in await self._directory.list_all()
            if (not request.server_id or s.server_id == request.server_id)
            and (not request.admins_only or s.admin)
        ]
        page = found[start : start + size]
        return admin_pb.ListSessionsResponse(
            sessions=[
                admin_pb2.LoggedOnSession(
                    session_id=s.session_id,
                    user_id=s.user_id,
                    username=s.username,
                    server_id=s.server_id,
                    client_name=s.client_name,
                    login_time=timestamp(s.login_time),
                    admin=s.admin,
                )
                for s in page
            ],
            next_page_token=str(start + size) if start + size < len(found) else "",
        )

    async def GetLicensePool(
        self, request: admin_pb.GetLicensePoolRequest, context: Context
    ) -> admin_pb.GetLicensePoolResponse:
        self._admin(context)
        usage = await self._licenses.usage()
        return admin_pb.GetLicensePoolResponse(
            pool=admin_pb2.LicensePool(
                total=usage.total, in_use=usage.in_use, in_use_by_server=usage.by_server
            )
        )

    async def ListServers(
        self, request: admin_pb.ListServersRequest, context: Context
    ) -> admin_pb.ListServersResponse:
        self._admin(context)
        servers = []
        for info in await self._clients.locator.servers():
            role = _ROLES.get(info.role, admin_pb2.SERVER_ROLE_UNSPECIFIED)
            if request.role and role != request.role:
                continue
            state = admin_pb2.SERVER_STATE_SERVING
            if info.draining:
                state = admin_pb2.SERVER_STATE_DRAINING
            elif info.degraded:
                state = admin_pb2.SERVER_STATE_DEGRADED
            servers.append(
                admin_pb2.ServerStatus(
                    server_id=info.server_id,
                    role=role,
                    address=info.address,
                    epoch=info.epoch,
                    state=state,
                    capacity=info.capacity,
                    load=info.load,
                    heartbeat_time=info.heartbeat_time,
                    start_time=info.start_time,
                    version=info.version,
                    outbox_depth=info.outbox_depth,
                )
            )
        return admin_pb.ListServersResponse(servers=servers)

    # -- served by a later release: UNIMPLEMENTED naming the method ----------------------

    async def ListConfigProperties(
        self, request: admin_pb.ListConfigPropertiesRequest, context: Context
    ) -> admin_pb.ListConfigPropertiesResponse:
        """Not served by this release."""
        raise _later("ListConfigProperties")

    async def GetConfigProperty(
        self, request: admin_pb.GetConfigPropertyRequest, context: Context
    ) -> admin_pb.GetConfigPropertyResponse:
        """Not served by this release."""
        raise _later("GetConfigProperty")

    async def SetConfigProperty(
        self, request: admin_pb.SetConfigPropertyRequest, context: Context
    ) -> admin_pb.SetConfigPropertyResponse:
        """Not served by this release."""
        raise _later("SetConfigProperty")

    async def AcquireEditLease(
        self, request: admin_pb.AcquireEditLeaseRequest, context: Context
    ) -> admin_pb.AcquireEditLeaseResponse:
        """Not served by this release."""
        raise _later("AcquireEditLease")

    async def RenewEditLease(
        self, request: admin_pb.RenewEditLeaseRequest, context: Context
    ) -> admin_pb.RenewEditLeaseResponse:
        """Not served by this release."""
        raise _later("RenewEditLease")

    async def ReleaseEditLease(
        self, request: admin_pb.ReleaseEditLeaseRequest, context: Context
    ) -> admin_pb.ReleaseEditLeaseResponse:
        """Not served by this release."""
        raise _later("ReleaseEditLease")

    async def ListEditLeases(
        self, request: admin_pb.ListEditLeasesRequest, context: Context
    ) -> admin_pb.ListEditLeasesResponse:
        """Not served by this release."""
        raise _later("ListEditLeases")

    async def MoveUser(
        self, request: admin_pb.MoveUserRequest, context: Context
    ) -> admin_pb.MoveUserResponse:
        """Not served by this release."""
        raise _later("MoveUser")

    async def DrainServer(
        self, request: admin_pb.DrainServerRequest, context: Context
    ) -> admin_pb.DrainServerResponse:
        """Not served by this release."""
        raise _later("DrainServer")

    async def ListAuditEvents(
        self, request: admin_pb.ListAuditEventsRequest, context: Context
    ) -> admin_pb.ListAuditEventsResponse:
        """Not served by this release."""
        raise _later("ListAuditEvents")
