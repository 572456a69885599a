"""Conversations and their members in SQL (the ``ConversationStore`` of chat).

Members keep the order in which they joined (``position``) and their read marker;
a member's conversation list is keyset-paged on ``(updated_at, conversation_id)``
descending through the members' ``user_id`` index, so a page costs the same
wherever it starts. Membership changes lock the conversation row first, so that
concurrent changes of one conversation are applied one after the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from procall.chat.model import Conversation, ConversationKind, MemberConversation
from procall.errors import InvalidArgument, NotFound
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import chat_members, conversations

__all__ = [
    "SqlConversationStore",
    "later_of",
    "lock_conversation",
    "member_conversations_page",
    "members_of",
    "refuse_nul",
]

# rows per IN list: well below SQL Server's 2,100 parameters per statement
_CHUNK = 500


def later_of(column: ColumnElement[Any], value: Any) -> ColumnElement[Any]:
    """``max(column, value)`` in SQL that every dialect understands (no ``GREATEST``);
    ``value`` is a Python value or a SQL expression (a ``bindparam``)."""
    bound = value if isinstance(value, ColumnElement) else literal(value, type_=column.type)
    return case((column < bound, bound), else_=column)


def refuse_nul(dialect_name: str, field: str, value: str) -> None:
    """``InvalidArgument`` for text with a NUL character on PostgreSQL, which cannot store
    it in text columns (SQLite and SQL Server can); the text is never altered."""
    if dialect_name == "postgresql" and "\x00" in value:
        raise InvalidArgument.field(field, "contains a NUL character, which cannot be stored")


def member_conversations_page(
    user_id: str, limit: int, after: tuple[float, str] | None
) -> Select[Any]:
    """The member's conversations with marker, newest change first, after the cursor."""
    statement = (
        select(conversations, chat_members.c.read_message_id)
        .join(chat_members, chat_members.c.conversation_id == conversations.c.conversation_id)
        .where(chat_members.c.user_id == user_id)
    )
    if after is not None:
        updated_at, conversation_id = after
        statement = statement.where(
            or_(
                conversations.c.updated_at < updated_at,
                and_(
                    conversations.c.updated_at == updated_at,
                    conversations.c.conversation_id < conversation_id,
                ),
            )
        )
    return statement.order_by(
        conversations.c.updated_at.desc(), conversations.c.conversation_id.desc()
    ).limit(limit)


def members_of(conversation_ids: Sequence[str]) -> Select[Any]:
    """``(conversation_id, user_id)`` of these conversations' members, in joining order."""
    return (
        select(chat_members.c.conversation_id, chat_members.c.user_id)
        .where(chat_members.c.conversation_id.in_(conversation_ids))
        .order_by(chat_members.c.conversation_id, chat_members.c.position)
    )


def _conversation(row: Row[Any], member_ids: Sequence[str]) -> Conversation:
    return Conversation(
        conversation_id=row.conversation_id,
        kind=ConversationKind(row.kind),
        title=row.title,
        member_ids=tuple(member_ids),
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
        last_message_id=int(row.last_message_id),
    )


def _not_found(conversation_id: str) -> NotFound:
    return NotFound("conversation not found", metadata={"conversation_id": conversation_id})


async def _member_ids(
    conn: AsyncConnection, conversation_ids: Sequence[str]
) -> Mapping[str, list[str]]:
    found: dict[str, list[str]] = {cid: [] for cid in conversation_ids}
    for start in range(0, len(conversation_ids), _CHUNK):
        part = conversation_ids[start : start + _CHUNK]
        for conversation_id, user_id in await conn.execute(members_of(part)):
            found[conversation_id].append(user_id)
    return found


async def _load(conn: AsyncConnection, conversation_id: str) -> Conversation | None:
    statement = select(conversations).where(conversations.c.conversation_id == conversation_id)
    row = (await conn.execute(statement)).first()
    if row is None:
        return None
    members = await _member_ids(conn, [conversation_id])
    return _conversation(row, members[conversation_id])


def lock_conversation(conversation_id: str) -> Select[Any]:
    """The conversation's newest id, its row locked until the transaction ends
    (``FOR UPDATE``; an ``UPDLOCK`` hint on SQL Server, which has no ``FOR UPDATE``)."""
    return (
        select(conversations.c.last_message_id)
        .where(conversations.c.conversation_id == conversation_id)
        .with_for_update()
        .with_hint(conversations, "WITH (UPDLOCK, ROWLOCK)", "mssql")
    )


async def _lock(conn: AsyncConnection, conversation_id: str) -> int:
    """Lock the conversation row for the rest of the transaction and return its newest
    message id; NotFound when the conversation does not exist."""
    newest = (await conn.execute(lock_conversation(conversation_id))).scalar_one_or_none()
    if newest is None:
        raise _not_found(conversation_id)
    return int(newest)


async def _touch(conn: AsyncConnection, conversation_id: str, now: float) -> None:
    await conn.execute(
        update(conversations)
        .where(conversations.c.conversation_id == conversation_id)
        .values(updated_at=later_of(conversations.c.updated_at, now))
    )


class SqlConversationStore:
    """Conversations and members in the chat & journal database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def create(self, conversation: Conversation) -> Conversation:
        """Store a new conversation with its members; an existing id is returned unchanged."""
        existing = await self.get(conversation.conversation_id)
        if existing is not None:
            return existing
        refuse_nul(self._db.dialect_name, "title", conversation.title)
        member_ids = list(dict.fromkeys(conversation.member_ids))
        members = [
            {
                "conversation_id": conversation.conversation_id,
                "user_id": user_id,
                "position": position,
                "joined_at": conversation.created_at,
                "read_message_id": conversation.last_message_id,
            }
            for position, user_id in enumerate(member_ids, start=1)
        ]
        try:
            async with self._db.begin() as conn:
                await conn.execute(
                    insert(conversations).values(
                        conversation_id=conversation.conversation_id,
                        kind=int(conversation.kind),
                        title=conversation.title,
                        created_at=conversation.created_at,
                        updated_at=conversation.updated_at,
                        last_message_id=conversation.last_message_id,
                    )
                )
                if members:
                    await conn.execute(insert(chat_members), members)
        except sa_exc.IntegrityError:
            # created concurrently (the same 1:1 pair, a retried request): theirs stands
            existing = await self.get(conversation.conversation_id)
            if existing is None:
                raise
            return existing
        return Conversation(
            conversation_id=conversation.conversation_id,
            kind=conversation.kind,
            title=conversation.title,
            member_ids=tuple(member_ids),
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
            last_message_id=conversation.last_message_id,
        )

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation with its current members, or None."""
        async with self._db.connect() as conn:
            return await _load(conn, conversation_id)

    async def read_marker(self, conversation_id: str, user_id: str) -> int:
        """A member's read marker (0 when none)."""
        statement = select(chat_members.c.read_message_id).where(
            chat_members.c.conversation_id == conversation_id,
            chat_members.c.user_id == user_id,
        )
        async with self._db.connect() as conn:
            value = (await conn.execute(statement)).scalar_one_or_none()
        return int(value or 0)

    async def list_for_member(
        self, user_id: str, limit: int, after: tuple[float, str] | None
    ) -> list[MemberConversation]:
        """The member's conversations by (updated_at, conversation_id) descending, after the
        cursor; ``unread_count`` is left 0."""
        if limit <= 0:
            return []
        async with self._db.connect() as conn:
            rows = (await conn.execute(member_conversations_page(user_id, limit, after))).all()
            members = await _member_ids(conn, [row.conversation_id for row in rows])
        return [
            MemberConversation(
                conversation=_conversation(row, members[row.conversation_id]),
                read_message_id=int(row.read_message_id),
            )
            for row in rows
        ]

    async def set_title(self, conversation_id: str, title: str, now: float) -> Conversation:
        """Rename; ``NotFound`` when the conversation does not exist."""
        refuse_nul(self._db.dialect_name, "title", title)
        async with self._db.begin() as conn:
            result = await conn.execute(
                update(conversations)
                .where(conversations.c.conversation_id == conversation_id)
                .values(title=title, updated_at=later_of(conversations.c.updated_at, now))
            )
            if not result.rowcount:
                raise _not_found(conversation_id)
            loaded = await _load(conn, conversation_id)
        assert loaded is not None
        return loaded

    async def add_members(
        self, conversation_id: str, user_ids: Sequence[str], now: float
    ) -> Conversation:
        """Add members (present ones are left alone); a new member's marker starts at the
        newest message, so history before joining does not count as unread."""
        wanted = list(dict.fromkeys(user_ids))
        async with self._db.begin() as conn:
            newest = await _lock(conn, conversation_id)
            present = await _member_ids(conn, [conversation_id])
            new = [user_id for user_id in wanted if user_id not in present[conversation_id]]
            if new:
                last_position = (
                    await conn.execute(
                        select(func.max(chat_members.c.position)).where(
                            chat_members.c.conversation_id == conversation_id
                        )
                    )
                ).scalar_one_or_none() or 0
                await conn.execute(
                    insert(chat_members),
                    [
                        {
                            "conversation_id": conversation_id,
                            "user_id": user_id,
                            "position": last_position + offset,
                            "joined_at": now,
                            "read_message_id": newest,
                        }
                        for offset, user_id in enumerate(new, start=1)
                    ],
                )
                await _touch(conn, conversation_id, now)
            loaded = await _load(conn, conversation_id)
        assert loaded is not None
        return loaded

    async def remove_members(
        self, conversation_id: str, user_ids: Sequence[str], now: float
    ) -> Conversation:
        """Remove members (absent ones are ignored)."""
        gone = list(dict.fromkeys(user_ids))
        async with self._db.begin() as conn:
            await _lock(conn, conversation_id)
            removed = 0
            for start in range(0, len(gone), _CHUNK):
                result = await conn.execute(
                    delete(chat_members).where(
                        chat_members.c.conversation_id == conversation_id,
                        chat_members.c.user_id.in_(gone[start : start + _CHUNK]),
                    )
                )
                removed += result.rowcount
            if removed:
                await _touch(conn, conversation_id, now)
            loaded = await _load(conn, conversation_id)
        assert loaded is not None
        return loaded
