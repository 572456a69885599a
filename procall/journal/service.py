"""The journal use cases: read and add to one's own journal, record events of others.

Writes go through the same durable path as chat messages: the central database, or
this server's outbox while it is down; entry ids derive from the writer's request
id, so a retried write stores one entry even when the retry lands on another server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from procall.errors import InvalidArgument, NotFound
from procall.journal.model import MAX_NOTE_BYTES, JournalEntry, JournalKind, entry_id_for
from procall.journal.ports import JournalEventSink, JournalStore, JournalWrites
from procall.paging import (
    decode_page_token,
    encode_page_token,
    time_from_cursor,
    time_in_cursor,
)
from procall.validation import check_id, check_request_id, check_text

__all__ = ["Journal"]

_MAX_PAGE_SIZE = 500
_DEFAULT_PAGE_SIZE = 50


class Journal:
    """Each user's journal."""

    def __init__(
        self,
        store: JournalStore,
        writes: JournalWrites,
        events: JournalEventSink,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._writes = writes
        self._events = events
        self._clock = clock

    async def page(
        self,
        caller: str,
        kinds: Sequence[JournalKind],
        start: float | None,
        end: float | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[JournalEntry], str]:
        """The caller's entries, newest first."""
        if page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument.field("end_time", "must be after start_time")
        limit = min(page_size or _DEFAULT_PAGE_SIZE, _MAX_PAGE_SIZE)
        wanted = sorted(set(kinds))
        scope = {
            "user": caller,
            "kinds": ",".join(str(int(k)) for k in wanted),
            "start": repr(start),
            "end": repr(end),
        }
        cursor = decode_page_token(page_token, "journal", scope)
        before: tuple[float, str] | None = None
        if cursor is not None:
            if len(cursor) != 2 or not isinstance(cursor[1], str):
                raise InvalidArgument.field("page_token", "is not a valid page token")
            before = (time_from_cursor(cursor[0]), cursor[1])
        found = await self._store.page(caller, wanted, start, end, before, limit + 1)
        page = found[:limit]
        token = ""
        if len(found) > limit:
            last = page[-1]
            token = encode_page_token(
                "journal", scope, (time_in_cursor(last.event_time), last.entry_id)
            )
        return page, token

    async def add_note(
        self, caller: str, kind: JournalKind | None, text: str, event_time: float | None,
        request_id: str,
    ) -> JournalEntry:  # fmt: skip
        """Add a note to the caller's journal (clients may only add notes)."""
        if kind not in (None, JournalKind.NOTE):
            raise InvalidArgument.field("entry.kind", "clients can only add NOTE entries")
        text = check_text(text, "entry.text", MAX_NOTE_BYTES)
        request_id = check_request_id(request_id, required=False) or uuid.uuid4().hex
        entry = JournalEntry(
            entry_id_for(caller, request_id),
            caller,
            JournalKind.NOTE,
            event_time if event_time is not None else self._clock(),
            text=text,
            request_id=request_id,
        )
        await self.record([entry])
        return entry

    async def record(self, entries: Sequence[JournalEntry]) -> None:
        """Write entries (of any kind, e.g. by the call flow) and tell their users' clients."""
        await self._writes.write(list(entries))
        for entry in entries:
            await self._events.entry_added(entry)

    async def delete(self, caller: str, entry_id: str) -> None:
        """Delete one entry of the caller's journal."""
        if not await self._store.delete(caller, check_id(entry_id, "entry_id")):
            raise NotFound(
                f"journal entry {entry_id!r} does not exist", metadata={"entry_id": entry_id}
            )
