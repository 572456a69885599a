"""The durable write path: the central database and the local outbox (small Protocols).

A *record* is one write that must not be lost: a chat message, a read marker or a
journal entry. Records are applied to the central database idempotently (a message
by conversation and id, a marker by moving forward only, a journal entry by id), so
applying one twice — after a crash between apply and acknowledge, or because two
servers queued the same retried send — stores it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from procall.chat.model import ChatMessage, ReadMarker
from procall.journal.model import JournalEntry

__all__ = ["CentralWriter", "Outbox", "Record"]

#: One write that must reach the central database.
Record = ChatMessage | ReadMarker | JournalEntry


class CentralWriter(Protocol):
    """The chat & journal database."""

    async def apply(self, records: Sequence[Record]) -> None:
        """Apply all records in one transaction, idempotently; ``Unavailable`` when the
        database cannot be reached (then nothing of the batch counts as applied)."""
        ...


class Outbox(Protocol):
    """A local, durable, bounded FIFO of records (a SQLite file)."""

    async def append(self, records: Sequence[Record]) -> None:
        """Queue records; synced to disk before returning. ``Unavailable`` (reason
        OUTBOX_FULL) when the outbox is full or the disk is."""
        ...

    async def peek(self, limit: int) -> list[tuple[int, Record]]:
        """The oldest queued records with their positions, oldest first."""
        ...

    async def remove_through(self, position: int) -> None:
        """Drop the records up to and including ``position`` (they reached the database)."""
        ...

    async def find_message(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        """A queued message by its sender's idempotency key."""
        ...

    @property
    def depth(self) -> int:
        """Records queued."""
        ...
