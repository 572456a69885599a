"""Journal: each user's log of calls and other notable events (transport-free).

``Journal`` (the use-case) lists and adds entries through ``JournalStore`` (SQL), writes
through ``JournalWrites`` (which ``procall.outbox.DurableWriter`` satisfies) and tells the
user's sessions through ``JournalEventSink``.
"""

from procall.journal.model import MAX_NOTE_BYTES, JournalEntry, JournalKind, entry_id_for
from procall.journal.ports import JournalEventSink, JournalStore, JournalWrites
from procall.journal.service import Journal

__all__ = [
    "MAX_NOTE_BYTES",
    "Journal",
    "JournalEntry",
    "JournalEventSink",
    "JournalKind",
    "JournalStore",
    "JournalWrites",
    "entry_id_for",
]
