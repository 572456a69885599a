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


#: Details of the admin actions that change where users live (secret-free, short).
_ADMIN_DETAILS: dict[str, Callable[[Any], dict[str, str]]] = {
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
    rules = {}
    for method in service.methods:
        rule = AuditRule(action=f"admin.{method.name}", subject=_user_id)
        if method.name in _ADMIN_DETAILS:
            rule = AuditRule(
                action=rule.action, subject=_user_id, detail=_ADMIN_DETAILS[method.name]
            )
        rules[f"{service.full_name}/{method.name}"] = rule
    return rules


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
