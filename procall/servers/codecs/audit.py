"""Audit events and queries between protobuf and ``procall.audit``."""

from __future__ import annotations

import json

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.audit import AuditOutcome, AuditQuery, StoredAuditEvent
from procall.servers.codecs.time import timestamp

__all__ = ["audit_event_to_pb", "audit_query_of"]

_OUTCOMES = {
    AuditOutcome.SUCCESS: admin_pb2.AUDIT_OUTCOME_SUCCESS,
    AuditOutcome.DENIED: admin_pb2.AUDIT_OUTCOME_DENIED,
    AuditOutcome.FAILED: admin_pb2.AUDIT_OUTCOME_FAILED,
}


def audit_query_of(request: admin_pb.ListAuditEventsRequest) -> AuditQuery:
    """The filters of a ListAuditEvents request."""
    return AuditQuery(
        actor=request.actor_user_id.strip(),
        subject=request.subject_user_id.strip(),
        action=request.action.strip(),
    )


def audit_event_to_pb(stored: StoredAuditEvent) -> admin_pb2.AuditEvent:
    """The protobuf AuditEvent of a stored event."""
    event = stored.event
    return admin_pb2.AuditEvent(
        audit_event_id=stored.event_id,
        actor_user_id=event.actor,
        action=event.action,
        resource=event.subject,
        details=json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
        event_time=timestamp(event.time),
        subject_user_id=event.subject,
        outcome=_OUTCOMES[event.outcome],
        source=event.source,
    )
