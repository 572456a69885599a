"""The audit log: who did what, for whom, with which result.

Revision ID: 0004_audit
Revises: 0003_chat_journal
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from procall.storage.sql.tables import LongUnicodeText

revision = "0004_audit"
down_revision = "0003_chat_journal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the audit_events table."""
    op.create_table(
        "audit_events",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("event_time", sa.Double(), nullable=False),
        sa.Column("actor", sa.Unicode(160), nullable=False),
        sa.Column("action", sa.Unicode(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("subject", sa.Unicode(160), nullable=False),
        sa.Column("source", sa.Unicode(128), nullable=False),
        sa.Column("detail", LongUnicodeText(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_time", "audit_events", ["event_time", "event_id"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "event_time"])
    op.create_index("ix_audit_events_subject", "audit_events", ["subject", "event_time"])


def downgrade() -> None:
    """Drop the audit_events table."""
    op.drop_table("audit_events")
