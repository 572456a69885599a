"""Directory: users, groups, delegations, pick-up groups, LDAP home-server assignments.

Revision ID: 0001_directory
Revises: (none, the first revision)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from procall.storage.sql.tables import UTCDateTime

revision = "0001_directory"
down_revision = None
branch_labels = None
depends_on = None

_ID = 64


def _filtered(column: str) -> dict[str, Any]:
    where = sa.text(f"{column} IS NOT NULL")
    return {"mssql_where": where, "postgresql_where": where, "sqlite_where": where}


def upgrade() -> None:
    """Create the Directory's tables."""
    op.create_table(
        "directory_users",
        sa.Column("id", sa.String(_ID), nullable=False),
        sa.Column("username", sa.Unicode(64), nullable=False),
        sa.Column("username_key", sa.Unicode(64), nullable=False),
        sa.Column("display_name", sa.Unicode(256), nullable=False),
        sa.Column("display_name_key", sa.Unicode(256), nullable=False),
        sa.Column("mail", sa.Unicode(254), nullable=True),
        sa.Column("mail_key", sa.Unicode(254), nullable=True),
        sa.Column("principal_name", sa.Unicode(256), nullable=True),
        sa.Column("principal_name_key", sa.Unicode(256), nullable=True),
        sa.Column("phone_number", sa.Unicode(64), nullable=True),
        sa.Column("phone_key", sa.Unicode(64), nullable=True),
        sa.Column("department", sa.Unicode(128), nullable=True),
        sa.Column("department_key", sa.Unicode(128), nullable=True),
        sa.Column("home_server_id", sa.Unicode(128), nullable=True),
        sa.Column("admin", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("disabled", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("password_hash", sa.Unicode(512), nullable=True),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("update_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_users"),
        sa.UniqueConstraint("username_key", name="uq_directory_users_username_key"),
    )
    op.create_index(
        "uq_directory_users_mail_key",
        "directory_users",
        ["mail_key"],
        unique=True,
        **_filtered("mail_key"),
    )
    op.create_index(
        "uq_directory_users_principal_name_key",
        "directory_users",
        ["principal_name_key"],
        unique=True,
        **_filtered("principal_name_key"),
    )
    op.create_index(
        "ix_directory_users_home_server_id",
        "directory_users",
        ["home_server_id", "username_key"],
    )
    op.create_index("ix_directory_users_phone_key", "directory_users", ["phone_key"])

    op.create_table(
        "directory_groups",
        sa.Column("id", sa.String(_ID), nullable=False),
        sa.Column("name", sa.Unicode(128), nullable=False),
        sa.Column("name_key", sa.Unicode(128), nullable=False),
        sa.Column("description", sa.Unicode(1024), nullable=True),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_groups"),
        sa.UniqueConstraint("name_key", name="uq_directory_groups_name_key"),
    )
    op.create_table(
        "directory_group_members",
        sa.Column("group_id", sa.String(_ID), nullable=False),
        sa.Column("user_id", sa.String(_ID), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["directory_groups.id"],
            name="fk_directory_group_members_group_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["directory_users.id"],
            name="fk_directory_group_members_user_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_directory_group_members"),
    )
    op.create_index("ix_directory_group_members_user_id", "directory_group_members", ["user_id"])

    op.create_table(
        "directory_delegations",
        sa.Column("id", sa.String(_ID), nullable=False),
        sa.Column("principal_user_id", sa.String(_ID), nullable=False),
        sa.Column("delegate_user_id", sa.String(_ID), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_delegations"),
        sa.UniqueConstraint(
            "principal_user_id",
            "delegate_user_id",
            name="uq_directory_delegations_principal_user_id_delegate_user_id",
        ),
    )
    op.create_index(
        "ix_directory_delegations_delegate_user_id",
        "directory_delegations",
        ["delegate_user_id"],
    )
    op.create_table(
        "directory_delegation_scopes",
        sa.Column("delegation_id", sa.String(_ID), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["delegation_id"],
            ["directory_delegations.id"],
            name="fk_directory_delegation_scopes_delegation_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delegation_id", "scope", name="pk_directory_delegation_scopes"),
    )

    op.create_table(
        "directory_pickup_groups",
        sa.Column("id", sa.String(_ID), nullable=False),
        sa.Column("name", sa.Unicode(128), nullable=False),
        sa.Column("name_key", sa.Unicode(128), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_pickup_groups"),
        sa.UniqueConstraint("name_key", name="uq_directory_pickup_groups_name_key"),
    )
    op.create_table(
        "directory_pickup_group_members",
        sa.Column("pickup_group_id", sa.String(_ID), nullable=False),
        sa.Column("user_id", sa.String(_ID), nullable=False),
        sa.ForeignKeyConstraint(
            ["pickup_group_id"],
            ["directory_pickup_groups.id"],
            name="fk_directory_pickup_group_members_pickup_group_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "pickup_group_id", "user_id", name="pk_directory_pickup_group_members"
        ),
    )
    op.create_index(
        "ix_directory_pickup_group_members_user_id",
        "directory_pickup_group_members",
        ["user_id"],
    )

    op.create_table(
        "directory_home_servers",
        sa.Column("user_id", sa.String(_ID), nullable=False),
        sa.Column("home_server_id", sa.Unicode(128), nullable=False),
        sa.Column("update_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_directory_home_servers"),
    )
    op.create_index(
        "ix_directory_home_servers_home_server_id",
        "directory_home_servers",
        ["home_server_id"],
    )


def downgrade() -> None:
    """Drop the Directory's tables."""
    for table in (
        "directory_home_servers",
        "directory_pickup_group_members",
        "directory_pickup_groups",
        "directory_delegation_scopes",
        "directory_delegations",
        "directory_group_members",
        "directory_groups",
        "directory_users",
    ):
        op.drop_table(table)
