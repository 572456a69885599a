"""Users' journals in SQL (the ``JournalStore`` of the journal): reads and deletes.

Entries are written only by the durable writer (``SqlCentralWriter``). A page is a
range of the index ``(user_id, event_time, entry_id)`` walked backwards, keyset-paged
on ``(event_time, entry_id)``, so it costs the same wherever it starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, delete, or_, select

from procall.journal.model import JournalEntry, JournalKind
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.tables import journal_entries

__all__ = ["SqlJournalStore", "entry_from_row", "journal_page"]

_j = journal_entries.c


def entry_from_row(row: Row[Any]) -> JournalEntry:
    """The ``JournalEntry`` of a ``journal_entries`` row."""
    return JournalEntry(
        entry_id=row.entry_id,
        user_id=row.user_id,
        kind=JournalKind(row.kind),
        event_time=float(row.event_time),
        peer_user_id=row.peer_user_id,
        call_id=row.call_id,
        duration_ms=None if row.duration_ms is None else int(row.duration_ms),
        text=row.text,
        request_id=row.request_id,
    )


def journal_page(
    user_id: str,
    kinds: Sequence[JournalKind],
    start: float | None,
    end: float | None,
    before: tuple[float, str] | None,
    limit: int,
) -> Select[Any]:
    """The user's entries of ``kinds`` (all when empty) with ``start <= event_time < end``,
    newest first by ``(event_time, entry_id)``, strictly before ``before``."""
    conditions: list[ColumnElement[bool]] = [_j.user_id == user_id]
    if kinds:
        conditions.append(_j.kind.in_(sorted({int(kind) for kind in kinds})))
    if start is not None:
        conditions.append(_j.event_time >= start)
    if end is not None:
        conditions.append(_j.event_time < end)
    if before is not None:
        event_time, entry_id = before
        conditions.append(
            or_(
                _j.event_time < event_time,
                and_(_j.event_time == event_time, _j.entry_id < entry_id),
            )
        )
    return (
        select(journal_entries)
        .where(*conditions)
        .order_by(_j.event_time.desc(), _j.entry_id.desc())
        .limit(limit)
    )


class SqlJournalStore:
    """Journal entries in the chat & journal database (reads and deletes)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def page(
        self,
        user_id: str,
        kinds: Sequence[JournalKind],
        start: float | None,
        end: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> list[JournalEntry]:
        """The user's entries, newest first by (event_time, entry_id), of the given kinds (all
        when empty), with ``start <= event_time < end``, strictly before the cursor."""
        if limit <= 0:
            return []
        statement = journal_page(user_id, kinds, start, end, before, limit)
        async with self._db.connect() as conn:
            return [entry_from_row(row) for row in await conn.execute(statement)]

    async def get(self, user_id: str, entry_id: str) -> JournalEntry | None:
        """One entry of the user's journal."""
        statement = select(journal_entries).where(_j.entry_id == entry_id, _j.user_id == user_id)
        async with self._db.connect() as conn:
            row = (await conn.execute(statement)).first()
        return entry_from_row(row) if row is not None else None

    async def delete(self, user_id: str, entry_id: str) -> bool:
        """Delete one entry of the user's; False when there is none."""
        statement = delete(journal_entries).where(_j.entry_id == entry_id, _j.user_id == user_id)
        async with self._db.begin() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)
