"""What a UCServer audits: every AdminService call, and the use of delegations
(setting someone else's presence)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.servers.runtime.audit import AuditRule

__all__ = ["UCSERVER_AUDIT_RULES"]


def _for_someone_else(request: Any, actor: str) -> bool:
    return bool(request.user_id) and request.user_id != actor


def _user_id(request: Any, response: Any) -> str:
    return str(getattr(request, "user_id", ""))


def _lease_detail(request: Any) -> dict[str, str]:
    """Which resource or lease an admin call was about (edit leases, writes under a lease;
    names and ids only, no secrets)."""
    found = {}
    for name in ("resource", "lease_id"):
        value = getattr(request, name, "")
        if value:
            found[name] = str(value)
    return found


def _config_change(request: Any) -> dict[str, str]:
    wanted = request.property
    return {
        "property": wanted.name,
        "server_id": wanted.server_id,
        "value": wanted.value,
        "expected_version": str(request.expected_version),
        **_lease_detail(request),
    }


#: Details of admin methods beyond the subject (never secrets, short); the others record
#: the resource or lease they name.
_DETAILS: dict[str, Callable[[Any], dict[str, str]]] = {
    "SetConfigProperty": _config_change,
    "MoveUser": lambda r: {
        "target_server_id": r.target_server_id[:64],
        "users": str(len([u for u in (r.user_id, *r.user_ids) if u])),
    },
    "DrainServer": lambda r: {
        "server_id": r.server_id[:64],
        "stop_draining": str(r.stop_draining),
        "moves_per_second": str(r.moves_per_second),
    },
    "Rebalance": lambda r: {"moves_per_second": str(r.moves_per_second)},
}


def _admin_rules() -> dict[str, AuditRule]:
    service = admin_pb.DESCRIPTOR.services_by_name["AdminService"]
    return {
        f"{service.full_name}/{method.name}": AuditRule(
            action=f"admin.{method.name}",
            subject=_user_id,
            detail=_DETAILS.get(method.name, _lease_detail),
        )
        for method in service.methods
    }


#: The audited methods of a UCServer.
UCSERVER_AUDIT_RULES: dict[str, AuditRule] = {
    **_admin_rules(),
    "procall.api.presence.v1.PresenceService/SetPresence": AuditRule(
        action="presence.SetPresence",
        subject=_user_id,
        when=_for_someone_else,
        detail=lambda r: {"delegation": "presence.set"},
    ),
}
