"""Chat and journal: conversations, members with read markers, messages, journal entries.

Revision ID: 0003_chat_journal
Revises: 0002_contacts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from procall.storage.sql.tables import LongUnicodeText

revision = "0003_chat_journal"
down_revision = "0002_contacts"
branch_labels = None
depends_on = None

_ID = 64
_REQUEST_ID = 128


def upgrade() -> None:
    """Create the chat and journal tables."""
    op.create_table(
        "chat_conversations",
        sa.Column("conversation_id", sa.String(_ID), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("title", sa.Unicode(256), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("last_message_id", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("conversation_id", name="pk_chat_conversations"),
    )
    op.create_table(
        "chat_conversation_members",
        sa.Column("conversation_id", sa.String(_ID), nullable=False),
        sa.Column("user_id", sa.String(_ID), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("joined_at", sa.Double(), nullable=False),
        sa.Column("read_message_id", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("read_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["chat_conversations.conversation_id"],
            name="fk_chat_conversation_members_conversation_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name="pk_chat_conversation_members"),
    )
    op.create_index(
        "ix_chat_conversation_members_user_id", "chat_conversation_members", ["user_id"]
    )

    op.create_table(
        "chat_messages",
        sa.Column("conversation_id", sa.String(_ID), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("sender_id", sa.String(_ID), nullable=False),
        sa.Column("text", LongUnicodeText(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("request_id", sa.Unicode(_REQUEST_ID), nullable=True),
        sa.PrimaryKeyConstraint("conversation_id", "message_id", name="pk_chat_messages"),
    )
    where = sa.text("request_id IS NOT NULL")
    op.create_index(
        "uq_chat_messages_request_id",
        "chat_messages",
        ["conversation_id", "sender_id", "request_id"],
        unique=True,
        mssql_where=where,
        postgresql_where=where,
        sqlite_where=where,
    )

    op.create_table(
        "journal_entries",
        sa.Column("entry_id", sa.String(_ID), nullable=False),
        sa.Column("user_id", sa.String(_ID), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("event_time", sa.Double(), nullable=False),
        sa.Column("peer_user_id", sa.String(_ID), nullable=False),
        sa.Column("call_id", sa.String(_ID), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("text", LongUnicodeText(), nullable=False),
        sa.Column("request_id", sa.Unicode(_REQUEST_ID), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_journal_entries"),
    )
    op.create_index(
        "ix_journal_entries_user_id_event_time_entry_id",
        "journal_entries",
        ["user_id", "event_time", "entry_id"],
    )


def downgrade() -> None:
    """Drop the chat and journal tables."""
    for table in (
        "journal_entries",
        "chat_messages",
        "chat_conversation_members",
        "chat_conversations",
    ):
        op.drop_table(table)
