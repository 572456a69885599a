"""In-memory stand-ins for the ports of chat and the journal (the seams under the use cases).

The SQL-side fakes (conversations, messages, journal and the central half of the durable
writes) share one ``Tables``, so what the writer stores the stores read back, as with the
real database. Every fake has a ``down`` switch: while it is set, each call raises
``Unavailable`` naming the backend, as the real implementations do in an outage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from procall.chat.model import ChatMessage, Conversation, MemberConversation, ReadMarker
from procall.chat.ports import Allocation, MemberAllocation, SendConfirmation, TypingNotice
from procall.errors import NotFound, Unavailable
from procall.journal.model import JournalEntry, JournalKind
from procall.outbox.ports import Record

__all__ = [
    "SQL",
    "FakeClock",
    "MemoryChatState",
    "MemoryConversationStore",
    "MemoryDurableWrites",
    "MemoryJournalStore",
    "MemoryMessageStore",
    "MemoryUserDirectory",
    "RecordingChatEvents",
    "RecordingJournalEvents",
    "Switchable",
    "Tables",
]

#: The backend name of the chat & journal database in ``Unavailable`` errors.
SQL = "chat and journal database"


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> float:
        """Move on by ``seconds``; the new time."""
        self.now += seconds
        return self.now


class Switchable:
    """A fake that can be switched into an outage of its backend, whole or per method."""

    backend = "backend"

    def __init__(self) -> None:
        #: Every call fails.
        self.down = False
        #: Calls of these methods fail (one step of a use case failing, the rest working).
        self.failing: set[str] = set()

    def _check(self, method: str) -> None:
        if self.down or method in self.failing:
            raise Unavailable.backend(self.backend)


@dataclass
class Tables:
    """The central database's rows (shared by the SQL-side fakes)."""

    conversations: dict[str, Conversation] = field(default_factory=dict)
    #: (conversation id, user id) -> read marker, for current members only.
    markers: dict[tuple[str, str], int] = field(default_factory=dict)
    #: conversation id -> message id -> message.
    messages: dict[str, dict[int, ChatMessage]] = field(default_factory=dict)
    #: entry id -> entry.
    journal: dict[str, JournalEntry] = field(default_factory=dict)

    def history(self, conversation_id: str) -> list[ChatMessage]:
        """The stored messages of a conversation, oldest first."""
        stored = self.messages.get(conversation_id, {})
        return [stored[i] for i in sorted(stored)]


# -- chat: SQL side ------------------------------------------------------------------------------


class MemoryConversationStore(Switchable):
    """``ConversationStore`` over ``Tables``."""

    backend = SQL

    def __init__(self, tables: Tables) -> None:
        super().__init__()
        self.tables = tables
        self.gets = 0

    async def create(self, conversation: Conversation) -> Conversation:
        self._check("create")
        existing = self.tables.conversations.get(conversation.conversation_id)
        if existing is not None:
            return existing
        conversation = replace(
            conversation, member_ids=tuple(dict.fromkeys(conversation.member_ids))
        )
        self.tables.conversations[conversation.conversation_id] = conversation
        for user_id in conversation.member_ids:
            self.tables.markers[(conversation.conversation_id, user_id)] = (
                conversation.last_message_id
            )
        return conversation

    async def get(self, conversation_id: str) -> Conversation | None:
        self._check("get")
        self.gets += 1
        return self.tables.conversations.get(conversation_id)

    async def read_marker(self, conversation_id: str, user_id: str) -> int:
        self._check("read_marker")
        return self.tables.markers.get((conversation_id, user_id), 0)

    async def list_for_member(
        self, user_id: str, limit: int, after: tuple[float, str] | None
    ) -> list[MemberConversation]:
        self._check("list_for_member")
        mine = sorted(
            (c for c in self.tables.conversations.values() if user_id in c.member_ids),
            key=lambda c: (c.updated_at, c.conversation_id),
            reverse=True,
        )
        if after is not None:
            mine = [c for c in mine if (c.updated_at, c.conversation_id) < after]
        return [
            MemberConversation(c, self.tables.markers.get((c.conversation_id, user_id), 0))
            for c in mine[:limit]
        ]

    def _existing(self, conversation_id: str) -> Conversation:
        found = self.tables.conversations.get(conversation_id)
        if found is None:
            raise NotFound(f"conversation {conversation_id!r} does not exist")
        return found

    def _save(self, conversation: Conversation) -> Conversation:
        self.tables.conversations[conversation.conversation_id] = conversation
        return conversation

    async def set_title(self, conversation_id: str, title: str, now: float) -> Conversation:
        self._check("set_title")
        found = self._existing(conversation_id)
        return self._save(replace(found, title=title, updated_at=max(found.updated_at, now)))

    async def add_members(
        self, conversation_id: str, user_ids: Sequence[str], now: float
    ) -> Conversation:
        self._check("add_members")
        found = self._existing(conversation_id)
        new = [u for u in dict.fromkeys(user_ids) if u not in found.member_ids]
        if not new:
            return found  # nothing changes, nor does updated_at
        for user_id in new:
            self.tables.markers[(conversation_id, user_id)] = found.last_message_id
        return self._save(
            replace(
                found,
                member_ids=(*found.member_ids, *new),
                updated_at=max(found.updated_at, now),
            )
        )

    async def remove_members(
        self, conversation_id: str, user_ids: Sequence[str], now: float
    ) -> Conversation:
        self._check("remove_members")
        found = self._existing(conversation_id)
        if not any(u in found.member_ids for u in user_ids):
            return found  # nothing changes, nor does updated_at
        for user_id in user_ids:
            self.tables.markers.pop((conversation_id, user_id), None)
        return self._save(
            replace(
                found,
                member_ids=tuple(m for m in found.member_ids if m not in user_ids),
                updated_at=max(found.updated_at, now),
            )
        )


class MemoryMessageStore(Switchable):
    """``MessageStore`` over ``Tables``."""

    backend = SQL

    def __init__(self, tables: Tables) -> None:
        super().__init__()
        self.tables = tables

    async def page(
        self, conversation_id: str, *, backward: bool, from_id: int | None, limit: int
    ) -> list[ChatMessage]:
        self._check("page")
        ordered = self.tables.history(conversation_id)
        if backward:
            ordered.reverse()
            if from_id is not None:
                ordered = [m for m in ordered if m.message_id < from_id]
        elif from_id is not None:
            ordered = [m for m in ordered if m.message_id > from_id]
        return ordered[:limit]

    async def find_by_request(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        self._check("find_by_request")
        return next(
            (
                m
                for m in self.tables.history(conversation_id)
                if (m.sender_id, m.request_id) == (sender_id, request_id)
            ),
            None,
        )

    async def max_message_id(self, conversation_id: str) -> int:
        self._check("max_message_id")
        return max(self.tables.messages.get(conversation_id, {}), default=0)

    async def count_unread(self, user_id: str, markers: Mapping[str, int]) -> dict[str, int]:
        self._check("count_unread")
        return {
            conversation_id: sum(
                1
                for m in self.tables.history(conversation_id)
                if m.message_id > marker and m.sender_id != user_id
            )
            for conversation_id, marker in markers.items()
        }

    async def search(
        self,
        member_id: str,
        query: str,
        conversation_id: str | None,
        before: tuple[float, str, int] | None,
        limit: int,
    ) -> list[ChatMessage]:
        self._check("search")
        where = [
            c.conversation_id
            for c in self.tables.conversations.values()
            if member_id in c.member_ids
            and (conversation_id is None or c.conversation_id == conversation_id)
        ]
        found = sorted(
            (
                m
                for cid in where
                for m in self.tables.history(cid)
                if query.casefold() in m.text.casefold()
            ),
            key=lambda m: (m.created_at, m.conversation_id, m.message_id),
            reverse=True,
        )
        if before is not None:
            found = [m for m in found if (m.created_at, m.conversation_id, m.message_id) < before]
        return found[:limit]


class MemoryDurableWrites(Switchable):
    """``MessageWrites`` and ``JournalWrites``: applied to ``Tables`` as the central writer
    does (idempotently), or queued in an in-memory "outbox" while ``central_down``;
    ``flush()`` drains it.

    ``down`` is the whole write path failing (the outbox full as well).
    """

    backend = "chat write path"

    def __init__(self, tables: Tables) -> None:
        super().__init__()
        self.tables = tables
        self.central_down = False
        #: Every accepted batch, in order.
        self.batches: list[list[Record]] = []
        self.queued: list[Record] = []

    async def write(self, records: Sequence[Record]) -> object:
        self._check("write")
        self.batches.append(list(records))
        if self.central_down:
            self.queued.extend(records)
            return "queued"
        self._apply(records)
        return "stored"

    async def find_queued_message(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        self._check("find_queued_message")
        return next(
            (
                r
                for r in self.queued
                if isinstance(r, ChatMessage)
                and (r.conversation_id, r.sender_id, r.request_id)
                == (conversation_id, sender_id, request_id)
            ),
            None,
        )

    def flush(self) -> None:
        """The database is back: apply what was queued."""
        queued, self.queued = self.queued, []
        self._apply(queued)

    @property
    def records(self) -> list[Record]:
        """Every record accepted, in order."""
        return [r for batch in self.batches for r in batch]

    def _apply(self, records: Sequence[Record]) -> None:
        for record in records:
            if isinstance(record, ChatMessage):
                self._store_message(record)
            elif isinstance(record, ReadMarker):
                key = (record.conversation_id, record.user_id)
                if key in self.tables.markers:  # forward only, members only
                    self.tables.markers[key] = max(self.tables.markers[key], record.read_message_id)
            else:
                self.tables.journal.setdefault(record.entry_id, record)

    def _store_message(self, message: ChatMessage) -> None:
        stored = self.tables.messages.setdefault(message.conversation_id, {})
        if message.message_id in stored or any(
            (m.sender_id, m.request_id) == (message.sender_id, message.request_id)
            for m in stored.values()
        ):
            return  # the first of an id or of a request id wins
        stored[message.message_id] = message
        conversation = self.tables.conversations.get(message.conversation_id)
        if conversation is not None:
            self.tables.conversations[message.conversation_id] = replace(
                conversation,
                last_message_id=max(conversation.last_message_id, message.message_id),
                updated_at=max(conversation.updated_at, message.created_at),
            )


# -- chat: Redis side ----------------------------------------------------------------------------


@dataclass
class _Request:
    message_id: int
    created_at: float
    persisted: bool = False


class MemoryChatState(Switchable):
    """``ChatState`` over dicts, with the semantics of the Redis scripts (TTLs ignored).

    tests/integration/ports/test_chat_state.py runs one suite against this and
    ``RedisChatState``: a behaviour the fake gets wrong fails there.
    """

    backend = "Redis"

    def __init__(self) -> None:
        super().__init__()
        self.sequences: dict[str, int] = {}
        self.requests: dict[tuple[str, str, str], _Request] = {}
        self.member_cache: dict[str, tuple[str, ...]] = {}
        #: (conversation id, user id) -> unread count; a missing key means "unknown".
        self.counters: dict[tuple[str, str], int] = {}
        self.typists: set[tuple[str, str]] = set()
        self.confirms: list[tuple[str, str, str, tuple[str, ...]]] = []
        #: Calls of ``confirm_many`` (each one round trip in Redis).
        self.confirm_calls = 0

    def restart(self) -> None:
        """What a Redis restart without persistence leaves: nothing."""
        self.sequences.clear()
        self.requests.clear()
        self.member_cache.clear()
        self.counters.clear()
        self.typists.clear()

    async def allocate(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        now: float,
        seed: int | None,
        request_ttl: float,
    ) -> Allocation | None:
        self._check("allocate")
        key = (conversation_id, sender_id, request_id)
        first = self.requests.get(key)
        if first is not None:
            return Allocation(first.message_id, first.created_at, True, first.persisted)
        current = self.sequences.get(conversation_id)
        if seed is not None:
            if current is None or seed > current:
                current = seed
        elif current is None:
            return None
        current += 1
        self.sequences[conversation_id] = current
        self.requests[key] = _Request(current, now)
        return Allocation(current, now, False, False)

    async def allocate_as_member(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        now: float,
        request_ttl: float,
    ) -> MemberAllocation:
        self._check("allocate_as_member")
        members = self.member_cache.get(conversation_id)
        if members is None or sender_id not in members:
            return MemberAllocation(members, None)
        allocation = await self.allocate(
            conversation_id, sender_id, request_id, now, None, request_ttl
        )
        return MemberAllocation(members, allocation)

    async def confirm(
        self,
        conversation_id: str,
        sender_id: str,
        request_id: str,
        request_ttl: float,
        unread_for: Sequence[str] = (),
    ) -> None:
        self._check("confirm")
        self._confirm(conversation_id, sender_id, request_id, unread_for)

    async def confirm_many(self, confirmations: Sequence[SendConfirmation]) -> None:
        self._check("confirm_many")
        self.confirm_calls += 1
        for c in confirmations:
            self._confirm(c.conversation_id, c.sender_id, c.request_id, c.unread_for)

    def _confirm(
        self, conversation_id: str, sender_id: str, request_id: str, unread_for: Sequence[str]
    ) -> None:
        self.confirms.append((conversation_id, sender_id, request_id, tuple(unread_for)))
        request = self.requests.get((conversation_id, sender_id, request_id))
        if request is None or request.persisted:
            return
        request.persisted = True
        for user_id in dict.fromkeys(unread_for):
            if (conversation_id, user_id) in self.counters:
                self.counters[(conversation_id, user_id)] += 1

    async def ensure_sequence(self, conversation_id: str, at_least: int) -> None:
        self._check("ensure_sequence")
        self.sequences[conversation_id] = max(self.sequences.get(conversation_id, 0), at_least)

    async def members(self, conversation_id: str) -> tuple[str, ...] | None:
        self._check("members")
        return self.member_cache.get(conversation_id)

    async def set_members(self, conversation_id: str, member_ids: Sequence[str]) -> None:
        self._check("set_members")
        self.member_cache[conversation_id] = tuple(member_ids)

    async def unread(self, user_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        self._check("unread")
        return {
            cid: self.counters[(cid, user_id)]
            for cid in conversation_ids
            if (cid, user_id) in self.counters
        }

    async def set_unread(self, user_id: str, counts: Mapping[str, int]) -> None:
        self._check("set_unread")
        for cid, count in counts.items():
            self.counters[(cid, user_id)] = count

    async def forget_unread(self, user_id: str, conversation_ids: Sequence[str]) -> None:
        """Drop counters (so they are counted in SQL again)."""
        self._check("forget_unread")
        for cid in conversation_ids:
            self.counters.pop((cid, user_id), None)

    async def set_typing(self, conversation_id: str, user_id: str, ttl: float) -> None:
        self._check("set_typing")
        self.typists.add((conversation_id, user_id))

    async def clear_typing(self, conversation_id: str, user_id: str) -> bool:
        self._check("clear_typing")
        key = (conversation_id, user_id)
        was = key in self.typists
        self.typists.discard(key)
        return was


# -- chat: delivery and directory ----------------------------------------------------------------


class RecordingChatEvents(Switchable):
    """``ChatEventSink`` that keeps what it was asked to deliver."""

    backend = "event delivery"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[tuple[str, ...], ChatMessage]] = []
        #: The session each message was not delivered to (its sender's), per message.
        self.except_sessions: list[str] = []
        self.receipts: list[tuple[tuple[str, ...], ReadMarker]] = []
        self.typing_notices: list[tuple[tuple[str, ...], TypingNotice]] = []
        self.changes: list[tuple[Conversation, tuple[str, ...]]] = []

    async def message_created(
        self, user_ids: Sequence[str], message: ChatMessage, except_session: str = ""
    ) -> None:
        self._check("message_created")
        self.messages.append((tuple(user_ids), message))
        self.except_sessions.append(except_session)

    async def read_receipt(self, user_ids: Sequence[str], marker: ReadMarker) -> None:
        self._check("read_receipt")
        self.receipts.append((tuple(user_ids), marker))

    async def typing(self, user_ids: Sequence[str], notice: TypingNotice) -> None:
        self._check("typing")
        self.typing_notices.append((tuple(user_ids), notice))

    async def conversation_changed(
        self, conversation: Conversation, removed: Sequence[str]
    ) -> None:
        self._check("conversation_changed")
        self.changes.append((conversation, tuple(removed)))


class MemoryUserDirectory(Switchable):
    """``UserDirectory`` over a set of user ids."""

    backend = "directory"

    def __init__(self, user_ids: Sequence[str]) -> None:
        super().__init__()
        self.user_ids = set(user_ids)

    async def unknown_users(self, user_ids: Sequence[str]) -> list[str]:
        self._check("unknown_users")
        return [u for u in user_ids if u not in self.user_ids]


# -- journal -------------------------------------------------------------------------------------


class MemoryJournalStore(Switchable):
    """``JournalStore`` over ``Tables``."""

    backend = SQL

    def __init__(self, tables: Tables) -> None:
        super().__init__()
        self.tables = tables
        self.pages: list[tuple[str, tuple[JournalKind, ...], float | None, float | None]] = []

    async def page(
        self,
        user_id: str,
        kinds: Sequence[JournalKind],
        start: float | None,
        end: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> list[JournalEntry]:
        self._check("page")
        self.pages.append((user_id, tuple(kinds), start, end))
        found = sorted(
            (
                e
                for e in self.tables.journal.values()
                if e.user_id == user_id
                and (not kinds or e.kind in kinds)
                and (start is None or start <= e.event_time)
                and (end is None or e.event_time < end)
                and (before is None or (e.event_time, e.entry_id) < before)
            ),
            key=lambda e: (e.event_time, e.entry_id),
            reverse=True,
        )
        return found[:limit]

    async def get(self, user_id: str, entry_id: str) -> JournalEntry | None:
        self._check("get")
        entry = self.tables.journal.get(entry_id)
        return entry if entry is not None and entry.user_id == user_id else None

    async def delete(self, user_id: str, entry_id: str) -> bool:
        self._check("delete")
        if await self.get(user_id, entry_id) is None:
            return False
        del self.tables.journal[entry_id]
        return True


class RecordingJournalEvents(Switchable):
    """``JournalEventSink`` that keeps the entries it was told about."""

    backend = "event delivery"

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[JournalEntry] = []

    async def entry_added(self, entry: JournalEntry) -> None:
        self._check("entry_added")
        self.entries.append(entry)
