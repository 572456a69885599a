"""The audit log: who did what, for whom, with which result.

Authentication failures, administrators' actions and the use of delegations are
recorded through the ``AuditLog`` port (``BufferedAuditLog``: queued, written in
batches, never failing or slowing the audited call) and served, paged, by
``AdminService.ListAuditEvents`` (``AuditListing``).
"""

from procall.audit.buffer import AuditSink, BufferedAuditLog
from procall.audit.listing import (
    AuditListing,
    AuditPage,
    AuditQuery,
    AuditReader,
    StoredAuditEvent,
)
from procall.audit.model import AuditEvent, AuditOutcome
from procall.audit.ports import AuditLog

__all__ = [
    "AuditEvent",
    "AuditListing",
    "AuditLog",
    "AuditOutcome",
    "AuditPage",
    "AuditQuery",
    "AuditReader",
    "AuditSink",
    "BufferedAuditLog",
    "StoredAuditEvent",
]
