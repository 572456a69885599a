"""The SQL schema: one ``MetaData`` for every area, and the Directory's tables.

Constraint names follow one naming convention so that Alembic migrations can
address them on every dialect (SQLite, PostgreSQL, SQL Server). Text columns are
``Unicode`` (``NVARCHAR`` on SQL Server) with lengths, so they can be indexed
everywhere. Unique-when-set columns (mail, principal name) use filtered unique
indexes, because SQL Server's unique constraints allow only one ``NULL``.

The ``*_key`` columns hold the lower-cased (phone: digits only) form of a field:
they make uniqueness and searches case-insensitive the same way on every database
(SQLite's ``lower()`` only knows ASCII). Delegation and pick-up tables refer to users
by id without a foreign key: with the LDAP backend the users live in Active Directory.

Chat and journal tables keep their timestamps as float seconds since the epoch
(``DOUBLE PRECISION``, exact on every dialect), as the domain does: a stored value
comes back bit for bit, so keyset cursors built from returned values are exact.
Messages have no foreign key to their conversation: the durable writer applies them
in bulk and must never fail a batch over one of them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Unicode,
    UnicodeText,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "ID_LENGTH",
    "REQUEST_ID_LENGTH",
    "LongUnicodeText",
    "UTCDateTime",
    "chat_members",
    "chat_messages",
    "conversations",
    "delegation_scopes",
    "delegations",
    "group_members",
    "groups",
    "home_server_overrides",
    "journal_entries",
    "metadata",
    "pickup_group_members",
    "pickup_groups",
    "users",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

#: Shared by every area's tables, so one Alembic environment sees the whole schema.
metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Length of id columns (uuid strings; LDAP objectGUID / entryUUID are 36 characters).
ID_LENGTH = 64
#: Length of client idempotency keys (``procall.chat.model.MAX_REQUEST_ID_CHARS``).
REQUEST_ID_LENGTH = 128


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC, returned as an aware UTC ``datetime``.

    SQLite and SQL Server ``DATETIME2`` keep no time zone; storing UTC everywhere and
    attaching it on the way out gives the same result on every dialect.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``DATETIME2`` on SQL Server (``DATETIME`` rounds to 3.33 ms), ``DateTime`` elsewhere."""
        if dialect.name == "mssql":
            from sqlalchemy.dialects.mssql import DATETIME2

            precise: Any = DATETIME2  # untyped in SQLAlchemy
            return dialect.type_descriptor(precise())
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """Convert an aware datetime to naive UTC."""
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError("UTCDateTime needs a datetime")
        moment: dt.datetime = value
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        return moment

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """Attach UTC to a stored naive datetime."""
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        raise TypeError("unexpected stored timestamp")


class LongUnicodeText(TypeDecorator[str]):
    """Unbounded Unicode text: ``NVARCHAR(max)`` on SQL Server, ``TEXT`` elsewhere.

    Plain ``UnicodeText`` becomes the deprecated ``NTEXT`` on SQL Server whenever the
    server version is unknown (as when migrations are rendered offline), and ``NTEXT``
    takes neither ``lower()`` nor comparisons.
    """

    impl = UnicodeText
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``NVARCHAR(max)`` on SQL Server, ``UnicodeText`` elsewhere."""
        if dialect.name == "mssql":
            from sqlalchemy.dialects.mssql import NVARCHAR

            return dialect.type_descriptor(NVARCHAR(length="max"))  # type: ignore[arg-type]
        return dialect.type_descriptor(UnicodeText())


def _filtered_unique(name: str, column: str) -> Index:
    where = f"{column} IS NOT NULL"
    return Index(
        name,
        column,
        unique=True,
        mssql_where=text(where),
        postgresql_where=text(where),
        sqlite_where=text(where),
    )


users = Table(
    "directory_users",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("username", Unicode(64), nullable=False),
    Column("username_key", Unicode(64), nullable=False),
    Column("display_name", Unicode(256), nullable=False),
    Column("display_name_key", Unicode(256), nullable=False),
    Column("mail", Unicode(254), nullable=True),
    Column("mail_key", Unicode(254), nullable=True),
    Column("principal_name", Unicode(256), nullable=True),
    Column("principal_name_key", Unicode(256), nullable=True),
    Column("phone_number", Unicode(64), nullable=True),
    Column("phone_key", Unicode(64), nullable=True),
    Column("department", Unicode(128), nullable=True),
    Column("department_key", Unicode(128), nullable=True),
    Column("home_server_id", Unicode(128), nullable=True),
    Column("admin", Boolean(create_constraint=False), nullable=False),
    Column("disabled", Boolean(create_constraint=False), nullable=False),
    Column("password_hash", Unicode(512), nullable=True),
    Column("create_time", UTCDateTime(), nullable=False),
    Column("update_time", UTCDateTime(), nullable=False),
    UniqueConstraint("username_key"),
    _filtered_unique("uq_directory_users_mail_key", "mail_key"),
    _filtered_unique("uq_directory_users_principal_name_key", "principal_name_key"),
    Index("ix_directory_users_home_server_id", "home_server_id", "username_key"),
    Index("ix_directory_users_phone_key", "phone_key"),
)

groups = Table(
    "directory_groups",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", Unicode(128), nullable=False),
    Column("name_key", Unicode(128), nullable=False),
    Column("description", Unicode(1024), nullable=True),
    Column("create_time", UTCDateTime(), nullable=False),
    UniqueConstraint("name_key"),
)

group_members = Table(
    "directory_group_members",
    metadata,
    Column(
        "group_id",
        String(ID_LENGTH),
        ForeignKey("directory_groups.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("directory_users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Index("ix_directory_group_members_user_id", "user_id"),
)

delegations = Table(
    "directory_delegations",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("principal_user_id", String(ID_LENGTH), nullable=False),
    Column("delegate_user_id", String(ID_LENGTH), nullable=False),
    Column("create_time", UTCDateTime(), nullable=False),
    UniqueConstraint("principal_user_id", "delegate_user_id"),
    Index("ix_directory_delegations_delegate_user_id", "delegate_user_id"),
)

delegation_scopes = Table(
    "directory_delegation_scopes",
    metadata,
    Column(
        "delegation_id",
        String(ID_LENGTH),
        ForeignKey("directory_delegations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # scope names such as "presence.set": new scopes need no schema change
    Column("scope", String(64), primary_key=True),
)

pickup_groups = Table(
    "directory_pickup_groups",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", Unicode(128), nullable=False),
    Column("name_key", Unicode(128), nullable=False),
    Column("create_time", UTCDateTime(), nullable=False),
    UniqueConstraint("name_key"),
)

pickup_group_members = Table(
    "directory_pickup_group_members",
    metadata,
    Column(
        "pickup_group_id",
        String(ID_LENGTH),
        ForeignKey("directory_pickup_groups.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", String(ID_LENGTH), primary_key=True),
    Index("ix_directory_pickup_group_members_user_id", "user_id"),
)

#: Home servers assigned through the Directory for users that live in LDAP.
home_server_overrides = Table(
    "directory_home_servers",
    metadata,
    Column("user_id", String(ID_LENGTH), primary_key=True),
    Column("home_server_id", Unicode(128), nullable=False),
    Column("update_time", UTCDateTime(), nullable=False),
    Index("ix_directory_home_servers_home_server_id", "home_server_id"),
)

# -- chat -------------------------------------------------------------------------------------

conversations = Table(
    "chat_conversations",
    metadata,
    Column("conversation_id", String(ID_LENGTH), primary_key=True),
    Column("kind", SmallInteger, nullable=False),
    Column("title", Unicode(256), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    # the newest stored message id, bumped by the writer in the transaction that stores it
    Column("last_message_id", BigInteger, nullable=False, server_default=text("0")),
)

#: Members with their read markers; ``position`` keeps the order in which they joined.
chat_members = Table(
    "chat_conversation_members",
    metadata,
    Column(
        "conversation_id",
        String(ID_LENGTH),
        ForeignKey("chat_conversations.conversation_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", String(ID_LENGTH), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("joined_at", Double, nullable=False),
    Column("read_message_id", BigInteger, nullable=False, server_default=text("0")),
    Column("read_at", Double, nullable=True),
    # a member's conversations (the conversation list), then joined to conversations
    Index("ix_chat_conversation_members_user_id", "user_id"),
)

#: The history; the primary key serves paging and unread counting (id ranges per
#: conversation). A message without a request id is stored with NULL, so that the
#: filtered unique index never merges two of them.
chat_messages = Table(
    "chat_messages",
    metadata,
    Column("conversation_id", String(ID_LENGTH), primary_key=True),
    Column("message_id", BigInteger, primary_key=True, autoincrement=False),
    Column("sender_id", String(ID_LENGTH), nullable=False),
    Column("text", LongUnicodeText(), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("request_id", Unicode(REQUEST_ID_LENGTH), nullable=True),
    Index(
        "uq_chat_messages_request_id",
        "conversation_id",
        "sender_id",
        "request_id",
        unique=True,
        mssql_where=text("request_id IS NOT NULL"),
        postgresql_where=text("request_id IS NOT NULL"),
        sqlite_where=text("request_id IS NOT NULL"),
    ),
)

# -- journal ----------------------------------------------------------------------------------

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("entry_id", String(ID_LENGTH), primary_key=True),
    Column("user_id", String(ID_LENGTH), nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("event_time", Double, nullable=False),
    Column("peer_user_id", String(ID_LENGTH), nullable=False),
    Column("call_id", String(ID_LENGTH), nullable=False),
    Column("duration_ms", BigInteger, nullable=True),
    Column("text", LongUnicodeText(), nullable=False),
    Column("request_id", Unicode(REQUEST_ID_LENGTH), nullable=False),
    # a user's journal newest first, filtered by time; the entry id breaks ties
    Index("ix_journal_entries_user_id_event_time_entry_id", "user_id", "event_time", "entry_id"),
)
