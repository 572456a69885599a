"""Journal: each user's log of calls and other notable events (transport-free).

The package re-exports the model; the use cases live in ``procall.journal.service``.
"""

from procall.journal.model import JournalEntry, JournalKind, entry_id_for

__all__ = ["JournalEntry", "JournalKind", "entry_id_for"]
