"""Admin views: ``procall.api.admin.v1`` messages <-> the admin views' models."""

from __future__ import annotations

from procall.admin_views.model import LicenseUsage, LoggedOnSession, ServerState, state_of
from procall.api.admin.v1 import admin_pb2
from procall.errors import InvalidArgument
from procall.leases import EditLease
from procall.routing.models import ServerInfo, ServerRole
from procall.servers.codecs.time import timestamp, timestamp_of

__all__ = [
    "edit_lease_to_proto",
    "license_pool_to_proto",
    "logged_on_to_proto",
    "server_role_from_proto",
    "server_status_to_proto",
]

_ROLE_PREFIX = "SERVER_ROLE_"
_STATES = {
    ServerState.SERVING: admin_pb2.SERVER_STATE_SERVING,
    ServerState.DRAINING: admin_pb2.SERVER_STATE_DRAINING,
    ServerState.DEGRADED: admin_pb2.SERVER_STATE_DEGRADED,
}


def server_role_from_proto(
    value: admin_pb2.ServerRole.ValueType, field: str = "role"
) -> ServerRole | None:
    """The role of a ``ServerRole`` value; ``None`` for SERVER_ROLE_UNSPECIFIED.

    Raises ``InvalidArgument`` naming ``field`` for a value the contract does not define.
    """
    if value == admin_pb2.SERVER_ROLE_UNSPECIFIED:
        return None
    try:
        return ServerRole(admin_pb2.ServerRole.Name(value).removeprefix(_ROLE_PREFIX))
    except ValueError:
        raise InvalidArgument.field(field, f"unknown server role {value}") from None


def _role_to_proto(role: ServerRole) -> admin_pb2.ServerRole.ValueType:
    return admin_pb2.ServerRole.Value(_ROLE_PREFIX + role.value)


def logged_on_to_proto(session: LoggedOnSession) -> admin_pb2.LoggedOnSession:
    """One logged-on session as the contract's message."""
    return admin_pb2.LoggedOnSession(
        session_id=session.session_id,
        user_id=session.user_id,
        username=session.username,
        server_id=session.server_id,
        client_name=session.client_name,
        login_time=timestamp(session.login_time),
        admin=session.admin,
    )


def license_pool_to_proto(usage: LicenseUsage) -> admin_pb2.LicensePool:
    """The license pool as the contract's message."""
    return admin_pb2.LicensePool(
        total=usage.total, in_use=usage.in_use, in_use_by_server=usage.by_server
    )


def server_status_to_proto(server: ServerInfo) -> admin_pb2.ServerStatus:
    """A live server as the contract's ``ServerStatus``."""
    return admin_pb2.ServerStatus(
        server_id=server.server_id,
        role=_role_to_proto(server.role),
        address=server.address,
        epoch=server.epoch,
        state=_STATES[state_of(server)],
        capacity=server.capacity,
        load=server.load,
        heartbeat_time=timestamp_of(server.heartbeat_time),
        start_time=timestamp_of(server.start_time),
        version=server.version,
        outbox_depth=server.outbox_depth,
        dependencies=[
            admin_pb2.DependencyHealth(name=d.name, available=d.available, detail=d.detail)
            for d in server.dependencies
        ],
    )


def edit_lease_to_proto(lease: EditLease) -> admin_pb2.EditLease:
    """An edit lease as the contract's message (with its fencing number)."""
    return admin_pb2.EditLease(
        lease_id=lease.lease_id,
        resource=lease.resource,
        holder_user_id=lease.holder_user_id,
        server_id=lease.server_id,
        acquire_time=timestamp(lease.acquire_time),
        expire_time=timestamp(lease.expire_time),
        fencing=lease.fencing,
    )
