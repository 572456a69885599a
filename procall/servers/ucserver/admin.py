"""The admin part of a UCServer: the AdminService over the admin views use case."""

from __future__ import annotations

from procall.admin_views.ports import LicenseCounter, LoggedOnSessions
from procall.admin_views.views import AdminViews
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.api.session.v1 import session_pb2
from procall.audit import AuditListing
from procall.config import ConfigService
from procall.errors import InvalidArgument
from procall.leases import EditLeases
from procall.policies import ClientPolicies
from procall.routing.models import ServerInfo
from procall.servers.codecs.routing import server_from_proto
from procall.servers.moves.coordinator import MoveCoordinator
from procall.servers.runtime.app import binding
from procall.servers.runtime.grpc_server import ServiceBinding
from procall.servers.ucserver.admin_servicer import AdminServicer
from procall.servers.upstream.clients import UpstreamClients
from procall.session.manager import SessionManager

__all__ = ["admin_binding"]


class _LookupServers:
    """``LiveServers`` through the Lookup's ListServers (none without a Lookup)."""

    def __init__(self, clients: UpstreamClients) -> None:
        self._clients = clients

    async def servers(self) -> list[ServerInfo]:
        found = []
        for message in await self._clients.locator.servers():
            try:
                found.append(server_from_proto(message))
            except InvalidArgument:
                continue  # a role this release does not know: not shown
        return found


def admin_binding(
    sessions: SessionManager[session_pb2.Event],
    logged_on: LoggedOnSessions,
    licenses: LicenseCounter,
    clients: UpstreamClients,
    audit: AuditListing | None = None,
    leases: EditLeases | None = None,
    config: ConfigService | None = None,
    policies: ClientPolicies | None = None,
    moves: MoveCoordinator | None = None,
) -> ServiceBinding:
    """The AdminService, answering from the shared state, the Lookup, the audit log, the
    edit leases and the configuration database."""
    views = AdminViews(logged_on, licenses, _LookupServers(clients))
    return binding(
        AdminServicer(views, sessions, audit, leases, config, policies, moves),
        admin_pb,
        admin_grpc.add_AdminServiceServicer_to_server,
        "AdminService",
    )
