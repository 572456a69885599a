"""What the Directory audits: every write (administrators' and operators' actions).

Failed logins are recorded by the domain (``Directory.authenticate``), which knows
the account and the source; reads are not audited.
"""

from __future__ import annotations

from typing import Any

from procall.servers.runtime.audit import AuditRule

__all__ = ["DIRECTORY_AUDIT_RULES"]

_SERVICE = "procall.api.directory.v1.DirectoryService"


def _user_id(request: Any, response: Any) -> str:
    return str(request.user_id)


def _created_user(request: Any, response: Any) -> str:
    return str(response.user.user_id) if response is not None else ""


def _updated_user(request: Any, response: Any) -> str:
    return str(request.user.user_id)


def _principal(request: Any, response: Any) -> str:
    return str(request.delegation.principal_user_id)


def _rule(method: str, **kwargs: Any) -> tuple[str, AuditRule]:
    return f"{_SERVICE}/{method}", AuditRule(action=f"directory.{method}", **kwargs)


#: The audited methods of the DirectoryService.
DIRECTORY_AUDIT_RULES: dict[str, AuditRule] = dict(
    [
        _rule(
            "CreateUser",
            subject=_created_user,
            detail=lambda r: {"username": r.user.username[:64], "admin": str(r.user.admin)},
        ),
        _rule(
            "UpdateUser",
            subject=_updated_user,
            detail=lambda r: {"fields": ",".join(r.update_mask.paths)[:256] or "all"},
        ),
        _rule("DeleteUser", subject=_user_id),
        _rule("SetPassword", subject=_user_id),
        _rule(
            "SetHomeServer",
            subject=_user_id,
            detail=lambda r: {"home_server_id": r.home_server_id[:64]},
        ),
        _rule("BatchSetHomeServers", detail=lambda r: {"count": str(len(r.assignments))}),
        _rule("CreateGroup", detail=lambda r: {"name": r.group.name[:64]}),
        _rule("DeleteGroup", detail=lambda r: {"group_id": r.group_id[:64]}),
        _rule(
            "ModifyGroupMembers",
            detail=lambda r: {
                "group_id": r.group_id[:64],
                "added": str(len(r.add_user_ids)),
                "removed": str(len(r.remove_user_ids)),
            },
        ),
        _rule(
            "CreateDelegation",
            subject=_principal,
            detail=lambda r: {"delegate_user_id": r.delegation.delegate_user_id[:64]},
        ),
        _rule("DeleteDelegation", detail=lambda r: {"delegation_id": r.delegation_id[:64]}),
        _rule("CreatePickupGroup", detail=lambda r: {"name": r.pickup_group.name[:64]}),
        _rule(
            "UpdatePickupGroup",
            detail=lambda r: {"pickup_group_id": r.pickup_group.pickup_group_id[:64]},
        ),
        _rule("DeletePickupGroup", detail=lambda r: {"pickup_group_id": r.pickup_group_id[:64]}),
    ]
)
