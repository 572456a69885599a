"""Chat: conversations, messages, read markers (transport-free)."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from procall.clock import UnixTime
from procall.validation import MAX_REQUEST_ID_CHARS  # one limit for every area

__all__ = [
    "MAX_GROUP_MEMBERS",
    "MAX_REQUEST_ID_CHARS",
    "MAX_TEXT_BYTES",
    "MAX_TITLE_CHARS",
    "ChatMessage",
    "Conversation",
    "ConversationKind",
    "MemberConversation",
    "ReadMarker",
    "direct_conversation_id",
]

#: Largest message text, in bytes of UTF-8.
MAX_TEXT_BYTES = 16 * 1024
#: Longest group title.
MAX_TITLE_CHARS = 256
#: Most members a group conversation may have.
MAX_GROUP_MEMBERS = 1000


class ConversationKind(enum.IntEnum):
    """1:1 or group; the values are those of the wire enum."""

    DIRECT = 1
    GROUP = 2


def direct_conversation_id(user_a: str, user_b: str) -> str:
    """The one id of the 1:1 conversation of a pair (the same whoever creates it)."""
    first, second = sorted((user_a, user_b))
    digest = hashlib.sha256(f"{first}\x00{second}".encode()).hexdigest()[:32]
    return f"d-{digest}"


@dataclass(frozen=True)
class Conversation:
    """A 1:1 or group conversation."""

    conversation_id: str
    kind: ConversationKind
    title: str
    #: Current members, in the order they joined.
    member_ids: tuple[str, ...]
    created_at: UnixTime
    #: Last change: message, member or title.
    updated_at: UnixTime
    #: Newest stored message id; 0 when there is none.
    last_message_id: int = 0


@dataclass(frozen=True)
class MemberConversation:
    """A conversation as one member sees it."""

    conversation: Conversation
    #: The member's read marker: the newest message id read.
    read_message_id: int
    #: Messages of others newer than the marker.
    unread_count: int = 0


@dataclass(frozen=True)
class ChatMessage:
    """One message; ``message_id`` grows per conversation (1, 2, 3, ... maybe with gaps)."""

    conversation_id: str
    message_id: int
    sender_id: str
    text: str
    #: When the server accepted it (seconds since the epoch).
    created_at: UnixTime
    #: The sender's idempotency key.
    request_id: str


@dataclass(frozen=True)
class ReadMarker:
    """A member's read position in a conversation; it never moves backward."""

    conversation_id: str
    user_id: str
    read_message_id: int
    read_at: UnixTime
