"""Presence: each user's contact list.

Revision ID: 0002_contacts
Revises: 0001_directory
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_contacts"
down_revision = "0001_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the contacts table."""
    op.create_table(
        "contacts",
        sa.Column("owner_user_id", sa.Unicode(64), nullable=False),
        sa.Column("contact_user_id", sa.Unicode(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "create_time",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("owner_user_id", "contact_user_id", name="pk_contacts"),
    )


def downgrade() -> None:
    """Drop the contacts table."""
    op.drop_table("contacts")
