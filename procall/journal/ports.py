"""What the journal needs from the rest of the system (small Protocols)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from procall.journal.model import JournalEntry, JournalKind

__all__ = ["JournalEventSink", "JournalStore", "JournalWrites"]


class JournalStore(Protocol):
    """Reads and deletes in the central journal (SQL); writes go through the durable writer."""

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
        ...

    async def get(self, user_id: str, entry_id: str) -> JournalEntry | None:
        """One entry of the user's journal."""
        ...

    async def delete(self, user_id: str, entry_id: str) -> bool:
        """Delete one entry of the user's; False when there is none."""
        ...


class JournalEventSink(Protocol):
    """Tells a user's live sessions, wherever they are homed, about a new entry."""

    async def entry_added(self, entry: JournalEntry) -> None:
        """A new entry in ``entry.user_id``'s journal."""
        ...


class JournalWrites(Protocol):
    """The journal's write path that loses nothing: the central database, else the local
    outbox (``procall.outbox.DurableWriter`` satisfies it; the journal does not import it)."""

    async def write(self, records: Sequence[JournalEntry]) -> object:
        """Store or durably queue the entries; ``Unavailable`` when neither worked."""
        ...
