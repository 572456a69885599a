"""Journal: each user's log of calls and other notable events (transport-free)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from procall.clock import UnixTime

__all__ = ["MAX_NOTE_BYTES", "JournalEntry", "JournalKind", "entry_id_for"]

#: Largest note text, in bytes of UTF-8.
MAX_NOTE_BYTES = 16 * 1024

_NAMESPACE = uuid.UUID("6c1f0c1e-8a55-4d1b-9d43-5b0e7f1e2a10")


class JournalKind(enum.IntEnum):
    """What an entry records; the values are those of the wire enum."""

    CALL_PLACED = 1
    CALL_RECEIVED = 2
    CALL_MISSED = 3
    CALL_FORWARDED = 4
    CALL_PICKED_UP = 5
    NOTE = 6
    DELEGATE_ACTION = 7
    CALL_DECLINED = 8


def entry_id_for(user_id: str, request_id: str) -> str:
    """The id of the entry written by ``request_id`` (so a retried write stores one entry)."""
    return str(uuid.uuid5(_NAMESPACE, f"{user_id}\x00{request_id}"))


@dataclass(frozen=True)
class JournalEntry:
    """One event in one user's journal."""

    entry_id: str
    user_id: str
    kind: JournalKind
    #: When it happened (seconds since the epoch).
    event_time: UnixTime
    #: The other party, when there is one.
    peer_user_id: str = ""
    #: The call, for call entries.
    call_id: str = ""
    #: How long an answered call lasted, in milliseconds; None when not a call's duration.
    duration_ms: int | None = None
    text: str = ""
    #: Idempotency key of the write.
    request_id: str = ""
