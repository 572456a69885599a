"""What one audit record says."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from procall.clock import UnixTime

__all__ = ["AuditEvent", "AuditOutcome"]


class AuditOutcome(enum.Enum):
    """How the audited action ended."""

    SUCCESS = "SUCCESS"
    DENIED = "DENIED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class AuditEvent:
    """One audited action.

    ``actor`` is the user id (or ``service:<role>/<id>``, or ``anonymous``) that acted,
    ``subject`` the user the action was for (a delegate acting for someone else, an
    administrator changing a user), ``action`` a stable name such as
    ``directory.CreateUser`` or ``auth.login_failed``.
    """

    #: When it happened.
    time: UnixTime
    actor: str
    action: str
    outcome: AuditOutcome
    subject: str = ""
    #: The caller's network address, when known.
    source: str = ""
    #: Short, secret-free details (never passwords or tokens).
    detail: dict[str, str] = field(default_factory=dict)
