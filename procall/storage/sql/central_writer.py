"""The durable writer's SQL side (``CentralWriter`` of the outbox): batches, idempotently.

``SqlCentralWriter.apply`` stores a batch of records in one transaction, with a few
multi-row statements whatever the batch size:

* messages: one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (PostgreSQL,
  SQLite; SQLAlchemy's "insertmanyvalues" pages it), which skips a message whose
  ``(conversation_id, message_id)`` or whose sender's request id is already stored;
  then the conversations of the messages actually inserted get ``last_message_id`` and
  ``updated_at`` raised (never lowered), one pipelined ``UPDATE`` per conversation;
* read markers: one pipelined ``UPDATE ... WHERE read_message_id < new`` per member, so
  a marker only moves forward and a marker of a non-member changes nothing;
* journal entries: a multi-row insert that skips entry ids already stored.

Rows are written in key order, so two servers flushing overlapping batches at the same
time lock rows in the same order and cannot deadlock each other. Other dialects (SQL
Server) have no ``ON CONFLICT``: there the existing keys are read first under
``UPDLOCK, HOLDLOCK`` (which keeps concurrent writers from inserting them meanwhile),
and only the missing rows are inserted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    Table,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from procall.chat.model import ChatMessage, ReadMarker
from procall.journal.model import JournalEntry
from procall.outbox.ports import Record
from procall.storage.sql.chat_conversations import later_of, refuse_nul
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import chat_members, chat_messages, conversations, journal_entries

__all__ = [
    "SqlCentralWriter",
    "advance_markers",
    "bump_conversations",
    "existing_entry_ids",
    "existing_message_keys",
]

# keys per pre-read on dialects without ON CONFLICT: at most 5 parameters each, well below
# SQL Server's 2,100 parameters per statement
_KEY_CHUNK = 300

_m = chat_messages.c


@functools.cache
def bump_conversations() -> Any:
    """Raise a conversation's newest id and last change (executed once per conversation).

    Built once: statements are immutable, and building one costs more than running it
    from SQLAlchemy's compiled cache."""
    return (
        update(conversations)
        .where(conversations.c.conversation_id == bindparam("b_conversation_id"))
        .values(
            last_message_id=later_of(
                conversations.c.last_message_id, bindparam("b_message_id", type_=BigInteger())
            ),
            updated_at=later_of(
                conversations.c.updated_at, bindparam("b_created_at", type_=Double())
            ),
        )
    )


@functools.cache
def advance_markers() -> Any:
    """Move a member's read marker forward only (executed once per member; built once)."""
    new_id = bindparam("b_read_message_id", type_=BigInteger())
    return (
        update(chat_members)
        .where(
            chat_members.c.conversation_id == bindparam("b_conversation_id"),
            chat_members.c.user_id == bindparam("b_user_id"),
            chat_members.c.read_message_id < new_id,
        )
        .values(read_message_id=new_id, read_at=bindparam("b_read_at", type_=Double()))
    )


def existing_message_keys(messages: Sequence[dict[str, Any]]) -> Any:
    """Stored messages clashing with ``messages`` by id or by request id, read under an
    update lock on SQL Server (the hint is left out elsewhere)."""
    clashes: list[ColumnElement[bool]] = []
    for row in messages:
        clashes.append(
            and_(_m.conversation_id == row["conversation_id"], _m.message_id == row["message_id"])
        )
        if row["request_id"] is not None:
            clashes.append(
                and_(
                    _m.conversation_id == row["conversation_id"],
                    _m.sender_id == row["sender_id"],
                    _m.request_id == row["request_id"],
                )
            )
    return (
        select(_m.conversation_id, _m.message_id, _m.sender_id, _m.request_id)
        .where(or_(*clashes))
        .with_hint(chat_messages, "WITH (UPDLOCK, HOLDLOCK)", "mssql")
    )


def existing_entry_ids(entry_ids: Sequence[str]) -> Any:
    """Stored journal entry ids among ``entry_ids`` (update-locked on SQL Server)."""
    return (
        select(journal_entries.c.entry_id)
        .where(journal_entries.c.entry_id.in_(entry_ids))
        .with_hint(journal_entries, "WITH (UPDLOCK, HOLDLOCK)", "mssql")
    )


def _request_key(row: dict[str, Any]) -> tuple[str, str, str] | None:
    if row["request_id"] is None:
        return None
    return (row["conversation_id"], row["sender_id"], row["request_id"])


def _message_rows(messages: Iterable[ChatMessage]) -> list[dict[str, Any]]:
    """Rows of the messages, the first of a batch winning a clash, in key order."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    request_keys: set[tuple[str, str, str]] = set()
    for message in messages:
        row = {
            "conversation_id": message.conversation_id,
            "message_id": message.message_id,
            "sender_id": message.sender_id,
            "text": message.text,
            "created_at": message.created_at,
            "request_id": message.request_id or None,
        }
        key = (message.conversation_id, message.message_id)
        request_key = _request_key(row)
        if key in rows or (request_key is not None and request_key in request_keys):
            continue
        rows[key] = row
        if request_key is not None:
            request_keys.add(request_key)
    return [rows[key] for key in sorted(rows)]


def _marker_rows(markers: Iterable[ReadMarker]) -> list[dict[str, Any]]:
    """One row per member (the furthest of their markers), in key order."""
    furthest: dict[tuple[str, str], ReadMarker] = {}
    for marker in markers:
        key = (marker.conversation_id, marker.user_id)
        known = furthest.get(key)
        if known is None or marker.read_message_id > known.read_message_id:
            furthest[key] = marker
    return [
        {
            "b_conversation_id": marker.conversation_id,
            "b_user_id": marker.user_id,
            "b_read_message_id": marker.read_message_id,
            "b_read_at": marker.read_at,
        }
        for _key, marker in sorted(furthest.items())
    ]


def _entry_rows(entries: Iterable[JournalEntry]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for entry in entries:
        rows.setdefault(
            entry.entry_id,
            {
                "entry_id": entry.entry_id,
                "user_id": entry.user_id,
                "kind": int(entry.kind),
                "event_time": entry.event_time,
                "peer_user_id": entry.peer_user_id,
                "call_id": entry.call_id,
                "duration_ms": entry.duration_ms,
                "text": entry.text,
                "request_id": entry.request_id,
            },
        )
    return [rows[key] for key in sorted(rows)]


def _insert_ignoring(dialect: str, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` where the dialect has it, else None."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return None


@functools.cache
def _insert_messages(dialect: str) -> Any:
    """The messages' insert that skips stored ones and returns the inserted keys (None
    without ``ON CONFLICT``); built once per dialect."""
    statement = _insert_ignoring(dialect, chat_messages)
    if statement is None:
        return None
    return statement.returning(_m.conversation_id, _m.message_id, _m.created_at)


@functools.cache
def _insert_entries(dialect: str) -> Any:
    """The journal entries' insert that skips stored ids (None without ``ON CONFLICT``)."""
    statement = _insert_ignoring(dialect, journal_entries)
    if statement is None:
        return None
    # RETURNING makes SQLAlchemy send multi-row statements ("insertmanyvalues")
    return statement.returning(journal_entries.c.entry_id)


class SqlCentralWriter:
    """Applies batches of chat messages, read markers and journal entries, idempotently."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def apply(self, records: Sequence[Record]) -> None:
        """Apply all records in one transaction, idempotently; ``Unavailable`` when the
        database cannot be reached (then nothing of the batch counts as applied).

        ``InvalidArgument`` (nothing applied) for a record with a NUL character in a text
        field on PostgreSQL, which cannot store one; ``TypeError`` for a non-record."""
        messages: list[ChatMessage] = []
        markers: list[ReadMarker] = []
        entries: list[JournalEntry] = []
        for record in records:
            if isinstance(record, ChatMessage):
                messages.append(record)
            elif isinstance(record, ReadMarker):
                markers.append(record)
            elif isinstance(record, JournalEntry):
                entries.append(record)
            else:
                raise TypeError(f"not a record: {type(record).__name__}")
        if not records:
            return
        if self._db.dialect_name == "postgresql":
            for record in records:
                for field in fields(record):
                    value = getattr(record, field.name)
                    if isinstance(value, str):
                        refuse_nul(self._db.dialect_name, field.name, value)
        message_rows = _message_rows(messages) if messages else []
        marker_rows = _marker_rows(markers) if markers else []
        entry_rows = _entry_rows(entries) if entries else []

        async def store(conn: AsyncConnection) -> None:
            if message_rows:
                await self._store_messages(conn, message_rows)
            if marker_rows:
                await conn.execute(advance_markers(), marker_rows)
            if entry_rows:
                await self._store_entries(conn, entry_rows)

        # idempotent, so a batch that met a dead pooled connection simply runs again
        await self._db.transaction(store)

    async def _store_messages(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        returning = _insert_messages(conn.dialect.name)
        if returning is not None:
            inserted = [
                (row.conversation_id, int(row.message_id), float(row.created_at))
                for row in await conn.execute(returning, rows)
            ]
        else:
            fresh = await self._without_stored_messages(conn, rows)
            if fresh:
                await conn.execute(insert(chat_messages), fresh)
            inserted = [
                (row["conversation_id"], row["message_id"], row["created_at"]) for row in fresh
            ]
        newest: dict[str, tuple[int, float]] = {}
        for conversation_id, message_id, created_at in inserted:
            known = newest.get(conversation_id, (0, 0.0))
            newest[conversation_id] = (max(known[0], message_id), max(known[1], created_at))
        if newest:
            await conn.execute(
                bump_conversations(),
                [
                    {"b_conversation_id": cid, "b_message_id": mid, "b_created_at": at}
                    for cid, (mid, at) in sorted(newest.items())
                ],
            )

    async def _without_stored_messages(
        self, conn: AsyncConnection, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        stored_ids: set[tuple[str, int]] = set()
        stored_requests: set[tuple[str, str, str]] = set()
        for start in range(0, len(rows), _KEY_CHUNK):
            found = await conn.execute(existing_message_keys(rows[start : start + _KEY_CHUNK]))
            for conversation_id, message_id, sender_id, request_id in found:
                stored_ids.add((conversation_id, int(message_id)))
                if request_id is not None:
                    stored_requests.add((conversation_id, sender_id, request_id))
        return [
            row
            for row in rows
            if (row["conversation_id"], row["message_id"]) not in stored_ids
            and _request_key(row) not in stored_requests
        ]

    async def _store_entries(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        statement = _insert_entries(conn.dialect.name)
        if statement is not None:
            await conn.execute(statement, rows)
            return
        stored: set[str] = set()
        for start in range(0, len(rows), _KEY_CHUNK):
            part = [row["entry_id"] for row in rows[start : start + _KEY_CHUNK]]
            stored.update(row[0] for row in await conn.execute(existing_entry_ids(part)))
        fresh = [row for row in rows if row["entry_id"] not in stored]
        if fresh:
            await conn.execute(insert(journal_entries), fresh)
