"""AdminService: configuration, system-wide sessions, servers, the license pool and edit
leases (thin).

Every RPC needs an admin session. The audit log is read from every database that
holds audit events (``AuditListing``); configuration properties through
``procall.config.ConfigService``; edit leases are the ``EditLeases`` use cases on the
shared Redis; moving users, rebalancing and draining go to the ``MoveCoordinator``;
client policies to ``procall.policies.ClientPolicies``. A part not wired answers
UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc

from procall.admin_views.views import AdminViews, SessionFilter
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.session.v1 import session_pb2
from procall.audit import AuditListing
from procall.config import ConfigService, Scope
from procall.errors import PermissionDenied, Unimplemented
from procall.leases import EditLeases
from procall.policies import ClientPolicies
from procall.servers.codecs.admin import (
    edit_lease_to_proto,
    license_pool_to_proto,
    logged_on_to_proto,
    server_role_from_proto,
    server_status_to_proto,
)
from procall.servers.codecs.audit import audit_event_to_pb, audit_query_of
from procall.servers.codecs.config import property_to_proto, scope_from_proto
from procall.servers.moves.coordinator import MoveCoordinator, MoveOperation
from procall.servers.runtime.auth import current_claims
from procall.servers.ucserver.admin_policies import PolicyAdmin
from procall.session.manager import SessionManager
from procall.session.tokens import SessionClaims

__all__ = ["AdminServicer"]

Context = grpc.aio.ServicerContext[object, object]


def _operation(operation: MoveOperation) -> admin_pb.MoveOperation:
    return admin_pb.MoveOperation(
        operation_id=operation.operation_id,
        description=operation.description,
        total=operation.total,
        moved=operation.moved,
        failed=operation.failed,
        done=operation.done,
        redirected_sessions=operation.redirected_sessions,
        server_id=operation.server_id,
    )


def _later(method: str) -> Unimplemented:
    return Unimplemented(
        f"procall.api.admin.v1.AdminService/{method} is not implemented in this release of procall"
    )


class AdminServicer(PolicyAdmin, admin_grpc.AdminServiceServicer):
    """Decodes requests, calls the admin views, encodes replies."""

    def __init__(
        self,
        views: AdminViews,
        sessions: SessionManager[session_pb2.Event],
        audit: AuditListing | None = None,
        leases: EditLeases | None = None,
        config: ConfigService | None = None,
        policies: ClientPolicies | None = None,
        moves: MoveCoordinator | None = None,
    ) -> None:
        self._moves = moves
        self._views = views
        self._sessions = sessions
        self._audit = audit
        self._leases = leases
        self._config = config
        self._policies = policies

    def _lease_use_cases(self, method: str) -> EditLeases:
        if self._leases is None:
            raise _later(method)
        return self._leases

    def _admin(self, context: Context) -> SessionClaims:
        claims = current_claims()
        if not claims.admin:
            raise PermissionDenied("this needs an administrator's session")
        return claims

    async def ListSessions(
        self, request: admin_pb.ListSessionsRequest, context: Context
    ) -> admin_pb.ListSessionsResponse:
        self._admin(context)
        page, token = await self._views.list_sessions(
            SessionFilter(request.server_id, request.admins_only),
            request.page_size,
            request.page_token,
        )
        return admin_pb.ListSessionsResponse(
            sessions=[logged_on_to_proto(s) for s in page], next_page_token=token
        )

    async def GetLicensePool(
        self, request: admin_pb.GetLicensePoolRequest, context: Context
    ) -> admin_pb.GetLicensePoolResponse:
        self._admin(context)
        usage = await self._views.license_pool()
        return admin_pb.GetLicensePoolResponse(pool=license_pool_to_proto(usage))

    async def ListServers(
        self, request: admin_pb.ListServersRequest, context: Context
    ) -> admin_pb.ListServersResponse:
        self._admin(context)
        servers = await self._views.servers(server_role_from_proto(request.role))
        return admin_pb.ListServersResponse(servers=[server_status_to_proto(s) for s in servers])

    def _config_service(self, method: str) -> ConfigService:
        if self._config is None:
            raise _later(method)
        return self._config

    async def ListConfigProperties(
        self, request: admin_pb.ListConfigPropertiesRequest, context: Context
    ) -> admin_pb.ListConfigPropertiesResponse:
        """A page of the properties of a scope, with defaults for those never set."""
        self._admin(context)
        service = self._config_service("ListConfigProperties")
        scope = scope_from_proto(request.scope, "scope")
        assert scope is not None
        values, token = await service.list(
            scope, request.server_id, request.page_size, request.page_token
        )
        return admin_pb.ListConfigPropertiesResponse(
            properties=[property_to_proto(v) for v in values], next_page_token=token
        )

    async def GetConfigProperty(
        self, request: admin_pb.GetConfigPropertyRequest, context: Context
    ) -> admin_pb.GetConfigPropertyResponse:
        """One property (its default with version 0 when never set)."""
        self._admin(context)
        service = self._config_service("GetConfigProperty")
        scope = scope_from_proto(request.scope, "scope", required=False)
        key = service.key(request.name, scope, request.server_id)
        value = await service.get(key)
        return admin_pb.GetConfigPropertyResponse(property=property_to_proto(value))

    async def SetConfigProperty(
        self, request: admin_pb.SetConfigPropertyRequest, context: Context
    ) -> admin_pb.SetConfigPropertyResponse:
        """Write a property over the version the admin edited."""
        claims = self._admin(context)
        service = self._config_service("SetConfigProperty")
        wanted = request.property
        scope: Scope | None = scope_from_proto(wanted.scope, "property.scope", required=False)
        key = service.key(wanted.name, scope, wanted.server_id)
        written = await service.set(
            claims.user_id, key, wanted.value, request.expected_version, request.lease_id
        )
        return admin_pb.SetConfigPropertyResponse(property=property_to_proto(written))

    # -- served by a later release: UNIMPLEMENTED naming the method ----------------------

    async def AcquireEditLease(
        self, request: admin_pb.AcquireEditLeaseRequest, context: Context
    ) -> admin_pb.AcquireEditLeaseResponse:
        """Take (or, for its holder, renew) the edit lease of a resource."""
        admin = self._admin(context)
        lease = await self._lease_use_cases("AcquireEditLease").acquire(
            admin.user_id, request.resource, request.ttl_seconds
        )
        return admin_pb.AcquireEditLeaseResponse(lease=edit_lease_to_proto(lease))

    async def RenewEditLease(
        self, request: admin_pb.RenewEditLeaseRequest, context: Context
    ) -> admin_pb.RenewEditLeaseResponse:
        """Extend the caller's live lease."""
        admin = self._admin(context)
        lease = await self._lease_use_cases("RenewEditLease").renew(
            admin.user_id, request.lease_id, request.ttl_seconds
        )
        return admin_pb.RenewEditLeaseResponse(lease=edit_lease_to_proto(lease))

    async def ReleaseEditLease(
        self, request: admin_pb.ReleaseEditLeaseRequest, context: Context
    ) -> admin_pb.ReleaseEditLeaseResponse:
        """Give the caller's live lease back."""
        admin = self._admin(context)
        await self._lease_use_cases("ReleaseEditLease").release(admin.user_id, request.lease_id)
        return admin_pb.ReleaseEditLeaseResponse()

    async def ListEditLeases(
        self, request: admin_pb.ListEditLeasesRequest, context: Context
    ) -> admin_pb.ListEditLeasesResponse:
        """Every live lease of the system: who edits what, since when, on which server."""
        self._admin(context)
        leases = await self._lease_use_cases("ListEditLeases").list()
        return admin_pb.ListEditLeasesResponse(leases=[edit_lease_to_proto(x) for x in leases])

    def _mover(self, method: str) -> MoveCoordinator:
        if self._moves is None:
            raise _later(method)
        return self._moves

    async def MoveUser(
        self, request: admin_pb.MoveUserRequest, context: Context
    ) -> admin_pb.MoveUserResponse:
        """Move users to another UCServer now; their live sessions are redirected."""
        self._admin(context)
        users = [u for u in (request.user_id, *request.user_ids) if u]
        moved, redirected = await self._mover("MoveUser").move_users(
            users, request.target_server_id
        )
        return admin_pb.MoveUserResponse(redirected_sessions=redirected, moved_users=moved)

    async def DrainServer(
        self, request: admin_pb.DrainServerRequest, context: Context
    ) -> admin_pb.DrainServerResponse:
        """Drain a UCServer: no new logins there, its users move off in the background."""
        self._admin(context)
        mover = self._mover("DrainServer")
        if request.stop_draining:
            operation = await mover.stop_draining(request.server_id)
        else:
            operation = await mover.drain(request.server_id, request.moves_per_second)
        return admin_pb.DrainServerResponse(
            users_to_move=operation.total, operation=_operation(operation)
        )

    async def Rebalance(
        self, request: admin_pb.RebalanceRequest, context: Context
    ) -> admin_pb.RebalanceResponse:
        """Spread users evenly over the live UCServers in the background."""
        self._admin(context)
        operation = await self._mover("Rebalance").rebalance(request.moves_per_second)
        return admin_pb.RebalanceResponse(operation=_operation(operation))

    async def GetMoveOperation(
        self, request: admin_pb.GetMoveOperationRequest, context: Context
    ) -> admin_pb.GetMoveOperationResponse:
        """The progress of a rebalance or drain started on this server."""
        self._admin(context)
        operation = await self._mover("GetMoveOperation").operation(request.operation_id)
        return admin_pb.GetMoveOperationResponse(operation=_operation(operation))

    async def ListAuditEvents(
        self, request: admin_pb.ListAuditEventsRequest, context: Context
    ) -> admin_pb.ListAuditEventsResponse:
        """A page of the audit log (every server's records), newest first."""
        self._admin(context)
        if self._audit is None:
            raise _later("ListAuditEvents")
        page = await self._audit.page(
            audit_query_of(request), request.page_size, request.page_token
        )
        return admin_pb.ListAuditEventsResponse(
            events=[audit_event_to_pb(e) for e in page.events],
            next_page_token=page.next_page_token,
        )
