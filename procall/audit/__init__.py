"""The audit log: who did what, for whom, with which result.

Authentication failures, administrators' actions and the use of delegations are
recorded through the ``AuditLog`` port and served, paged, by
``AdminService.ListAuditEvents``.
"""

from procall.audit.model import AuditEvent, AuditOutcome
from procall.audit.ports import AuditLog

__all__ = ["AuditEvent", "AuditLog", "AuditOutcome"]
