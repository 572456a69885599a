"""Calls: each user's forwarding rules.

Revision ID: 0005_call_forwarding
Revises: 0004_audit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_call_forwarding"
down_revision = "0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the call_forwarding table."""
    op.create_table(
        "call_forwarding",
        sa.Column("user_id", sa.Unicode(64), nullable=False),
        sa.Column("position", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("condition", sa.SmallInteger(), nullable=False),
        sa.Column("target_user_id", sa.Unicode(64), nullable=False),
        sa.Column("no_answer_timeout", sa.Double(), nullable=False),
        sa.Column("enabled", sa.Boolean(create_constraint=False), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "position", name="pk_call_forwarding"),
        sa.UniqueConstraint("user_id", "condition", name="uq_call_forwarding_user_id_condition"),
    )


def downgrade() -> None:
    """Drop the call_forwarding table."""
    op.drop_table("call_forwarding")
