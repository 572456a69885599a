"""Configuration: property values with their versions, authors and fencing numbers.

Revision ID: 0006_config_properties
Revises: 0005_call_forwarding
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from procall.storage.sql.tables import LongUnicodeText

revision = "0006_config_properties"
down_revision = "0005_call_forwarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the config_properties table."""
    op.create_table(
        "config_properties",
        sa.Column("scope", sa.Unicode(8), nullable=False),
        sa.Column("server_id", sa.Unicode(64), nullable=False),
        sa.Column("name", sa.Unicode(128), nullable=False),
        sa.Column("value", LongUnicodeText(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.Unicode(64), nullable=False),
        sa.Column("fencing", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "server_id", "name", name="pk_config_properties"),
    )


def downgrade() -> None:
    """Drop the config_properties table."""
    op.drop_table("config_properties")
