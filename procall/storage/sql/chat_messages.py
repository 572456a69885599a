"""Reading the message history in SQL (the ``MessageStore`` of chat).

Messages are written only by the durable writer (``SqlCentralWriter``). Every read
here is a range of the primary key ``(conversation_id, message_id)``: history pages
in both directions, the newest id, and unread counts (one statement for many
conversations: the markers as a table, each counting one id range).

Search is a case-insensitive substring match (``lower()`` on both sides, ``LIKE`` with
its wildcards escaped) limited to the member's conversations. It scans those
conversations' messages, as no portable index serves a substring. ``lower()`` folds
only ASCII on SQLite; PostgreSQL folds what its ``LC_CTYPE`` knows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql

from procall.chat.model import ChatMessage
from procall.storage.sql.directory_queries import LIKE_ESCAPE, like_pattern
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import chat_members, chat_messages

__all__ = [
    "UNREAD_CHUNK",
    "SqlMessageStore",
    "history_page",
    "message_from_row",
    "search_messages",
    "unread_counts",
]

#: Conversations per unread-count statement on dialects without array or JSON parameters
#: (two parameters each, well below SQL Server's 2,100 parameters per statement).
UNREAD_CHUNK = 500

_m = chat_messages.c


def message_from_row(row: Row[Any]) -> ChatMessage:
    """The ``ChatMessage`` of a ``chat_messages`` row (a NULL request id becomes "")."""
    return ChatMessage(
        conversation_id=row.conversation_id,
        message_id=int(row.message_id),
        sender_id=row.sender_id,
        text=row.text,
        created_at=float(row.created_at),
        request_id=row.request_id or "",
    )


def history_page(
    conversation_id: str, *, backward: bool, from_id: int | None, limit: int
) -> Select[Any]:
    """Up to ``limit`` messages strictly before/after ``from_id``, in the direction of travel."""
    statement = select(chat_messages).where(_m.conversation_id == conversation_id)
    if backward:
        if from_id is not None:
            statement = statement.where(_m.message_id < from_id)
        return statement.order_by(_m.message_id.desc()).limit(limit)
    if from_id is not None:
        statement = statement.where(_m.message_id > from_id)
    return statement.order_by(_m.message_id).limit(limit)


def unread_counts(dialect_name: str, user_id: str, markers: Mapping[str, int]) -> Select[Any]:
    """``(conversation_id, unread)`` of others' messages above each marker, in one statement.

    The markers are a table, and each of its rows counts one range of the primary key
    (``message_id > marker``), so the cost follows the number of unread messages, not the
    size of the history. The table is one parameter whatever the number
    of conversations: an ``unnest`` of two arrays on PostgreSQL, ``json_each`` of a JSON
    object on SQLite (so the statement is compiled and planned once); other dialects get
    an ``OR`` of ranges (at most ``UNREAD_CHUNK`` conversations per statement).
    """
    keys: Any
    if dialect_name == "postgresql":
        keys = (
            func.unnest(
                bindparam("unread_ids", list(markers), type_=postgresql.ARRAY(String())),
                bindparam(
                    "unread_markers",
                    [int(marker) for marker in markers.values()],
                    type_=postgresql.ARRAY(BigInteger()),
                ),
            )
            .table_valued("conversation_id", "marker", name="markers")
            .render_derived()
        )
        conversation, marker = keys.c.conversation_id, keys.c.marker
    elif dialect_name == "sqlite":
        document = json.dumps({key: int(value) for key, value in markers.items()})
        keys = func.json_each(bindparam("unread_markers", document, type_=String())).table_valued(
            "key", "value", name="markers"
        )
        conversation, marker = keys.c.key, keys.c.value
    else:
        ranges = [
            and_(_m.conversation_id == conversation_id, _m.message_id > int(marker))
            for conversation_id, marker in markers.items()
        ]
        return (
            select(_m.conversation_id, func.count().label("unread"))
            .where(or_(*ranges), _m.sender_id != user_id)
            .group_by(_m.conversation_id)
        )
    # a correlated count per marker: always one index range scan per conversation (a join
    # lets PostgreSQL's planner, blind to the markers' values, pick a scan of every message)
    unread = (
        select(func.count())
        .where(_m.conversation_id == conversation, _m.message_id > marker, _m.sender_id != user_id)
        .scalar_subquery()
    )
    return select(conversation.label("conversation_id"), unread.label("unread")).select_from(keys)


def search_messages(
    member_id: str,
    query: str,
    conversation_id: str | None,
    before: tuple[float, str, int] | None,
    limit: int,
) -> Select[Any]:
    """Messages containing ``query`` (literally, case-insensitive) in the member's
    conversations (or the one given, if a member), newest first, strictly before ``before``."""
    pattern = literal(like_pattern(query))
    conditions: list[ColumnElement[bool]] = [
        func.lower(_m.text).like(func.lower(pattern), escape=LIKE_ESCAPE)
    ]
    if conversation_id is not None:
        conditions.append(_m.conversation_id == conversation_id)
    if before is not None:
        created_at, before_conversation, before_message = before
        conditions.append(
            or_(
                _m.created_at < created_at,
                and_(
                    _m.created_at == created_at,
                    or_(
                        _m.conversation_id < before_conversation,
                        and_(
                            _m.conversation_id == before_conversation,
                            _m.message_id < before_message,
                        ),
                    ),
                ),
            )
        )
    return (
        select(chat_messages)
        .join(
            chat_members,
            and_(
                chat_members.c.conversation_id == _m.conversation_id,
                chat_members.c.user_id == member_id,
            ),
        )
        .where(*conditions)
        .order_by(_m.created_at.desc(), _m.conversation_id.desc(), _m.message_id.desc())
        .limit(limit)
    )


class SqlMessageStore:
    """The message history in the chat & journal database (reads only)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def page(
        self, conversation_id: str, *, backward: bool, from_id: int | None, limit: int
    ) -> list[ChatMessage]:
        """Up to ``limit`` messages strictly older (backward) or newer (forward) than
        ``from_id``; from the newest (backward) or oldest (forward) when None; in the
        direction of travel."""
        if limit <= 0:
            return []
        statement = history_page(conversation_id, backward=backward, from_id=from_id, limit=limit)
        async with self._db.connect() as conn:
            return [message_from_row(row) for row in await conn.execute(statement)]

    async def find_by_request(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        """The message a sender stored with this idempotency key."""
        if not request_id:
            return None
        statement = select(chat_messages).where(
            _m.conversation_id == conversation_id,
            _m.sender_id == sender_id,
            _m.request_id == request_id,
        )
        async with self._db.connect() as conn:
            row = (await conn.execute(statement)).first()
        return message_from_row(row) if row is not None else None

    async def max_message_id(self, conversation_id: str) -> int:
        """The newest stored message id (0 when none)."""
        statement = select(func.max(_m.message_id)).where(_m.conversation_id == conversation_id)
        async with self._db.connect() as conn:
            value = (await conn.execute(statement)).scalar_one_or_none()
        return int(value or 0)

    async def count_unread(self, user_id: str, markers: Mapping[str, int]) -> dict[str, int]:
        """Per conversation id: messages of others newer than the given marker (0 included)."""
        counts = dict.fromkeys(markers, 0)
        if not markers:
            return counts
        dialect = self._db.dialect_name
        items = list(markers.items())
        size = len(items) if dialect in ("postgresql", "sqlite") else UNREAD_CHUNK
        async with self._db.connect() as conn:
            for start in range(0, len(items), size):
                part = dict(items[start : start + size])
                statement = unread_counts(dialect, user_id, part)
                for conversation_id, unread in await conn.execute(statement):
                    counts[conversation_id] = int(unread)
        return counts

    async def search(
        self,
        member_id: str,
        query: str,
        conversation_id: str | None,
        before: tuple[float, str, int] | None,
        limit: int,
    ) -> list[ChatMessage]:
        """Messages containing ``query`` (case-insensitive substring, matched literally) in
        conversations ``member_id`` is a member of (or in the one given), newest first by
        (created_at, conversation_id, message_id), strictly before the cursor."""
        if limit <= 0 or (self._db.dialect_name == "postgresql" and "\x00" in query):
            # PostgreSQL stores no NUL character, so no message there contains one
            return []
        statement = search_messages(member_id, query, conversation_id, before, limit)
        async with self._db.connect() as conn:
            return [message_from_row(row) for row in await conn.execute(statement)]
