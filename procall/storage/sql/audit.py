"""The audit log in SQL: ``AuditSink`` and ``AuditReader`` over the ``audit_events`` table.

Events are appended in batches (one insert per batch) and never changed. Times are
float seconds since the epoch (``DOUBLE PRECISION``, exact on every dialect), so that
the (time, id) keyset cursors of ``procall.audit.listing`` come back bit for bit.
Texts are clipped to their columns: a hostile login name cannot make a write fail.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Double, Index, String, Table, Unicode, and_, insert, or_, select

from procall.audit import AuditEvent, AuditOutcome, AuditQuery, StoredAuditEvent
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import LongUnicodeText, metadata

__all__ = ["SqlAuditStore", "audit_events"]

_NAME = 160
_ACTION = 128
_SOURCE = 128
_DETAIL = 4000

audit_events = Table(
    "audit_events",
    metadata,
    Column("event_id", String(32), primary_key=True),
    Column("event_time", Double, nullable=False),
    Column("actor", Unicode(_NAME), nullable=False),
    Column("action", Unicode(_ACTION), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("subject", Unicode(_NAME), nullable=False),
    Column("source", Unicode(_SOURCE), nullable=False),
    # a small JSON object of secret-free details
    Column("detail", LongUnicodeText, nullable=False),
    Index("ix_audit_events_time", "event_time", "event_id"),
    Index("ix_audit_events_actor", "actor", "event_time"),
    Index("ix_audit_events_subject", "subject", "event_time"),
)


def _row(event: AuditEvent) -> dict[str, Any]:
    detail = json.dumps(dict(event.detail), ensure_ascii=False, separators=(",", ":"))
    return {
        "event_id": uuid.uuid4().hex,
        "event_time": float(event.time),
        "actor": event.actor[:_NAME],
        "action": event.action[:_ACTION],
        "outcome": event.outcome.value,
        "subject": event.subject[:_NAME],
        "source": event.source[:_SOURCE],
        "detail": detail if len(detail) <= _DETAIL else "{}",
    }


def _event(row: Any) -> StoredAuditEvent:
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {}
    return StoredAuditEvent(
        row.event_id,
        AuditEvent(
            time=row.event_time,
            actor=row.actor,
            action=row.action,
            outcome=AuditOutcome(row.outcome),
            subject=row.subject,
            source=row.source,
            detail={str(k): str(v) for k, v in detail.items()} if isinstance(detail, dict) else {},
        ),
    )


class SqlAuditStore:
    """Audit events in one SQL database (the user database, the chat and journal database,
    or ``[database] audit_url``)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """Store ``events`` in one transaction."""
        if not events:
            return
        async with self._db.begin() as connection:
            await connection.execute(insert(audit_events), [_row(e) for e in events])

    async def list_events(
        self, query: AuditQuery, before: tuple[float, str] | None, limit: int
    ) -> list[StoredAuditEvent]:
        """Up to ``limit`` events matching ``query``, newest first, older than ``before``."""
        table = audit_events.c
        statement = select(audit_events)
        if query.actor:
            statement = statement.where(table.actor == query.actor)
        if query.subject:
            statement = statement.where(table.subject == query.subject)
        if query.action.endswith("."):
            statement = statement.where(table.action.startswith(query.action, autoescape=True))
        elif query.action:
            statement = statement.where(table.action == query.action)
        if before is not None:
            time, event_id = before
            statement = statement.where(
                or_(
                    table.event_time < time,
                    and_(table.event_time == time, table.event_id < event_id),
                )
            )
        statement = statement.order_by(table.event_time.desc(), table.event_id.desc()).limit(limit)
        async with self._db.connect() as connection:
            return [_event(row) for row in await connection.execute(statement)]
