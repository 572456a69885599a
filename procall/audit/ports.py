"""The port the audit log is written through."""

from __future__ import annotations

from typing import Protocol

from procall.audit.model import AuditEvent

__all__ = ["AuditLog"]


class AuditLog(Protocol):
    """Records audit events; a failure to record must never fail the audited call."""

    async def record(self, event: AuditEvent) -> None:
        """Record ``event`` (durably when the store answers; logged otherwise)."""
        ...
