"""Client policies: the features denied to a user's or a group's clients.

Revision ID: 0007_client_policies
Revises: 0006_config_properties
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_client_policies"
down_revision = "0006_config_properties"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the client_policies table."""
    op.create_table(
        "client_policies",
        sa.Column("kind", sa.Unicode(8), nullable=False),
        sa.Column("subject_id", sa.Unicode(64), nullable=False),
        sa.Column("denied", sa.Unicode(255), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.Unicode(64), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject_id", name="pk_client_policies"),
    )


def downgrade() -> None:
    """Drop the client_policies table."""
    op.drop_table("client_policies")
