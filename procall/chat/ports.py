"""What chat needs from the rest of the system (small Protocols)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from procall.chat.model import ChatMessage, Conversation, MemberConversation, ReadMarker
from procall.clock import UnixTime

__all__ = [
    "Allocation",
    "ChatEventSink",
    "ChatState",
    "ConversationStore",
    "MemberAllocation",
    "MessageStore",
    "MessageWrites",
    "SendConfirmation",
    "UserDirectory",
    "TypingNotice",
]


class ConversationStore(Protocol):
    """Conversations and their members, durable and central (SQL)."""

    async def create(self, conversation: Conversation) -> Conversation:
        """Store a new conversation with its members; an existing id is returned unchanged."""
        ...

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation with its current members, or None."""
        ...

    async def read_marker(self, conversation_id: str, user_id: str) -> int:
        """A member's read marker (0 when none)."""
        ...

    async def list_for_member(
        self, user_id: str, limit: int, after: tuple[float, str] | None
    ) -> list[MemberConversation]:
        """The member's conversations by (updated_at, conversation_id) descending, after the
        cursor ``(updated_at, conversation_id)`` of the previous page's last item; the
        ``unread_count`` of each is left 0 (the caller fills it)."""
        ...

    async def set_title(self, conversation_id: str, title: str, now: float) -> Conversation:
        """Rename; ``NotFound`` when the conversation does not exist."""
        ...

    async def add_members(
        self, conversation_id: str, user_ids: Sequence[str], now: float
    ) -> Conversation:
        """Add members (present ones are left alone); a new member's marker starts at the
        newest message, so history before joining does not count as unread."""
        ...

    async def remove_members(
        self, conversation_id: str, user_ids: Sequence[str], now: float
    ) -> Conversation:
        """Remove members (absent ones are ignored)."""
        ...


class MessageStore(Protocol):
    """Reads of the central message history (SQL); writes go through the durable writer."""

    async def page(
        self, conversation_id: str, *, backward: bool, from_id: int | None, limit: int
    ) -> list[ChatMessage]:
        """Up to ``limit`` messages strictly older (backward) or newer (forward) than
        ``from_id``; from the newest (backward) or oldest (forward) when None; in the
        direction of travel."""
        ...

    async def find_by_request(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        """The message a sender stored with this idempotency key."""
        ...

    async def max_message_id(self, conversation_id: str) -> int:
        """The newest stored message id (0 when none)."""
        ...

    async def count_unread(self, user_id: str, markers: Mapping[str, int]) -> dict[str, int]:
        """Per conversation id: messages of others newer than the given marker."""
        ...

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
        ...


@dataclass(frozen=True)
class Allocation:
    """A message id handed out for one send."""

    message_id: int
    created_at: UnixTime
    #: The same sender already sent this request id in this conversation.
    duplicate: bool
    #: For a duplicate: whether the first send was confirmed stored (or queued durably).
    persisted: bool


@dataclass(frozen=True)
class MemberAllocation:
    """What one step of a send learned from the shared state: the cached members and,
    when the sender is one of them, the message id."""

    #: The cached members in join order; None when they are not cached.
    members: tuple[str, ...] | None
    #: The id for the send; None when the members are not cached, the sender is not
    #: among them, or the conversation's sequence is unknown (nothing was allocated).
    allocation: Allocation | None


@dataclass(frozen=True)
class SendConfirmation:
    """One send stored or durably queued (see ``ChatState.confirm``)."""

    conversation_id: str
    sender_id: str
    request_id: str
    #: Seconds the request id stays remembered (for a record without a lifetime).
    request_ttl: float
    #: Members whose unread counter (where known) counts the message.
    unread_for: tuple[str, ...] = ()


class ChatState(Protocol):
    """The volatile, shared chat state (Redis): id sequences, member cache, unread, typing.

    Every method raises ``Unavailable`` naming Redis when it cannot be reached.
    """

    async def allocate(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        now: float,
        seed: int | None,
        request_ttl: float,
    ) -> Allocation | None:
        """Hand out the next message id, or the first one's for a repeated request id
        (kept ``request_ttl`` seconds). Returns None when the conversation's sequence is
        unknown (a Redis restart) and no ``seed`` (the newest stored id) was given."""
        ...

    async def allocate_as_member(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        now: float,
        request_ttl: float,
    ) -> MemberAllocation:
        """``allocate`` (without a seed) in the same step as the membership check against
        the cached members: nothing is allocated unless the sender is a cached member."""
        ...

    async def confirm(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        request_ttl: float,
        unread_for: Sequence[str] = (),
    ) -> None:
        """Record that the send of this request id is stored or durably queued, and — the
        first time only — count the message unread for ``unread_for`` (where known)."""
        ...

    async def confirm_many(self, confirmations: Sequence[SendConfirmation]) -> None:
        """``confirm`` for several sends at once (the sends of one group commit)."""
        ...

    async def ensure_sequence(self, conversation_id: str, at_least: int) -> None:
        """Make the conversation's sequence known, continuing after ``at_least`` (the newest
        stored id); a sequence already further along is left alone."""
        ...

    async def members(self, conversation_id: str) -> tuple[str, ...] | None:
        """The cached members, or None when not cached."""
        ...

    async def set_members(self, conversation_id: str, member_ids: Sequence[str]) -> None:
        """Cache the members (replacing what was cached)."""
        ...

    async def unread(self, user_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        """The known counters (conversations without one are left out)."""
        ...

    async def set_unread(self, user_id: str, counts: Mapping[str, int]) -> None:
        """Set counters (after counting in SQL, or after a read)."""
        ...

    async def forget_unread(self, user_id: str, conversation_ids: Sequence[str]) -> None:
        """Drop counters whose value is unknown (they are counted in SQL when next needed)."""
        ...

    async def set_typing(self, conversation_id: str, user_id: str, ttl: float) -> None:
        """The user types in the conversation for ``ttl`` seconds unless renewed."""
        ...

    async def clear_typing(self, conversation_id: str, user_id: str) -> bool:
        """The user stopped typing; False when no indication was set."""
        ...


@dataclass(frozen=True)
class TypingNotice:
    """A member started or stopped typing."""

    conversation_id: str
    user_id: str
    typing: bool
    expires_at: UnixTime


class ChatEventSink(Protocol):
    """Delivers chat events to the live sessions of users, wherever they are homed."""

    async def message_created(
        self, user_ids: Sequence[str], message: ChatMessage, except_session: str = ""
    ) -> None:
        """A new message, to every session of the users except ``except_session`` (the
        sending session, which has the message in its reply)."""
        ...

    async def read_receipt(self, user_ids: Sequence[str], marker: ReadMarker) -> None:
        """A member's read marker moved."""
        ...

    async def typing(self, user_ids: Sequence[str], notice: TypingNotice) -> None:
        """A member started or stopped typing."""
        ...

    async def conversation_changed(
        self, conversation: Conversation, removed: Sequence[str]
    ) -> None:
        """A conversation was created or changed: tell its members, and the ``removed``
        users that they no longer see it."""
        ...


class MessageWrites(Protocol):
    """Chat's write path that loses nothing: the central database, else the local outbox.

    ``procall.outbox.DurableWriter`` satisfies it (chat does not import the outbox).
    """

    async def write(self, records: Sequence[ChatMessage | ReadMarker]) -> object:
        """Store or durably queue the messages and markers; ``Unavailable`` when neither
        worked."""
        ...

    async def find_queued_message(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        """A message still waiting in the local outbox, by its idempotency key."""
        ...


class UserDirectory(Protocol):
    """Which users exist (the Directory)."""

    async def unknown_users(self, user_ids: Sequence[str]) -> list[str]:
        """The ids among ``user_ids`` that name no user."""
        ...
