"""Sending, reading and searching messages (the use cases behind ChatService).

A send takes its id from the shared sequence of the conversation (Redis), is
stored in the central database — or, while that is down, in this server's
durable outbox — and only then acknowledged and delivered to every member's
sessions. A retried send (same sender, conversation and request id) gets the
first send's id; when the first send was never confirmed stored (its server died
in between) the retry stores it, under the same id, so it cannot be lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from procall.chat.confirmations import ConfirmBatcher
from procall.chat.conversations import page_limit
from procall.chat.members import Membership
from procall.chat.model import ChatMessage, ReadMarker
from procall.chat.ports import (
    Allocation,
    ChatEventSink,
    ChatState,
    MessageStore,
    MessageWrites,
    SendConfirmation,
    TypingNotice,
)
from procall.chat.validation import check_id, check_query, check_request_id, check_text
from procall.errors import InvalidArgument, Unavailable
from procall.paging import (
    decode_page_token,
    encode_page_token,
    time_from_cursor,
    time_in_cursor,
)

__all__ = ["Messaging", "MessagingLimits"]

_log = logging.getLogger(__name__)
#: The largest message id a read marker can name (a signed 64-bit integer in SQL).
MAX_MESSAGE_ID = 2**63 - 1


@dataclass(frozen=True)
class MessagingLimits:
    """Tunables of the message flow."""

    #: Seconds a send's request id is remembered for retries.
    request_ttl: float = 24 * 3600.0
    #: Seconds a typing indication lasts unless renewed.
    typing_ttl: float = 6.0


class Messaging:
    """Messages of conversations, for their members."""

    def __init__(
        self,
        messages: MessageStore,
        state: ChatState,
        membership: Membership,
        writes: MessageWrites,
        events: ChatEventSink,
        clock: Callable[[], float],
        limits: MessagingLimits | None = None,
    ) -> None:
        self._messages = messages
        self._state = state
        self._confirmations = ConfirmBatcher(state)
        self._membership = membership
        self._writes = writes
        self._events = events
        self._clock = clock
        #: Replaced whole when the configuration changes (``procall.config``).
        self.limits = limits or MessagingLimits()

    async def send(
        self,
        caller: str,
        conversation_id: str,
        text: str,
        request_id: str,
        session_id: str = "",
    ) -> ChatMessage:
        """Store (or durably queue) a message and deliver it; idempotent per request id.

        ``session_id`` is the sending session: it gets the message in the reply, so it is
        left out of the delivery (the caller's other sessions get it).
        """
        conversation_id = check_id(conversation_id, "conversation_id")
        text = check_text(text)
        request_id = check_request_id(request_id)
        ttl = self.limits.request_ttl
        member_ids, allocation = await self._allocate(caller, conversation_id, request_id, ttl)
        message = ChatMessage(
            conversation_id, allocation.message_id, caller, text, allocation.created_at, request_id
        )
        if allocation.duplicate and allocation.persisted:
            # the first send was stored, but its server may have died before the event left
            # it: announce again (clients drop a message id they already have)
            stored = await self._first_send(message)
            await self._events.message_created(member_ids, stored, session_id)
            return stored
        await self._writes.write([message])
        others = tuple(m for m in member_ids if m != caller)
        try:
            # sends stored by one group commit confirm together (one Redis call)
            await self._confirmations.confirm(
                SendConfirmation(conversation_id, caller, request_id, ttl, others)
            )
        except Unavailable:  # stored all the same; counters are rebuilt from SQL
            _log.debug("Redis unavailable after storing message %s", message.message_id)
        await self._events.message_created(member_ids, message, session_id)
        return message

    async def _allocate(
        self, caller: str, conversation_id: str, request_id: str, ttl: float
    ) -> tuple[tuple[str, ...], Allocation]:
        """The members (after checking that ``caller`` is one) and the send's id.

        Usually one Redis call checks the cached members and allocates; a cache that
        lacks the members or the caller, or a lost sequence, takes the long way (SQL).
        """
        try:
            checked = await self._state.allocate_as_member(
                conversation_id, caller, request_id, self._clock(), ttl
            )
        except Unavailable:
            checked = None  # the long way says why: not a member, or Redis unavailable
        if checked is not None and checked.members is not None and checked.allocation is not None:
            return checked.members, checked.allocation
        member_ids = await self._membership.require_member(caller, conversation_id)
        allocation = await self._state.allocate(
            conversation_id, caller, request_id, self._clock(), None, ttl
        )
        if allocation is None:  # Redis lost the sequence: continue after the newest stored id
            try:
                seed = await self._messages.max_message_id(conversation_id)
            except Unavailable:
                raise Unavailable(
                    "the chat database is unavailable and the conversation's message "
                    "sequence must be rebuilt from it; try again later",
                    metadata={"backend": "chat and journal database"},
                    retry_after=1.0,
                ) from None
            allocation = await self._state.allocate(
                conversation_id, caller, request_id, self._clock(), seed, ttl
            )
            assert allocation is not None, "a seeded allocation always succeeds"
        return member_ids, allocation

    async def _first_send(self, retried: ChatMessage) -> ChatMessage:
        """What the first send of a retried request stored (its text wins)."""
        key = (retried.conversation_id, retried.sender_id, retried.request_id)
        try:
            stored = await self._messages.find_by_request(*key)
        except Unavailable:
            stored = None
        if stored is None:
            stored = await self._writes.find_queued_message(*key)
        return stored or retried

    async def page(
        self,
        caller: str,
        conversation_id: str,
        backward: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[ChatMessage], str]:
        """A page of history in the requested direction (UNAVAILABLE while SQL is down)."""
        conversation_id = check_id(conversation_id, "conversation_id")
        limit = page_limit(page_size)
        scope = {"conversation": conversation_id, "backward": str(backward)}
        cursor = decode_page_token(page_token, "messages", scope)
        from_id: int | None = None
        if cursor is not None:
            if len(cursor) != 1 or not isinstance(cursor[0], int) or cursor[0] < 0:
                raise InvalidArgument.field("page_token", "is not a valid page token")
            from_id = cursor[0]
        conversation = await self._membership.load(conversation_id)
        Membership.require(caller, conversation_id, conversation.member_ids)
        found = await self._messages.page(
            conversation_id, backward=backward, from_id=from_id, limit=limit + 1
        )
        page = found[:limit]
        token = ""
        if len(found) > limit:
            token = encode_page_token("messages", scope, (page[-1].message_id,))
        return page, token

    async def mark_read(self, caller: str, conversation_id: str, message_id: int) -> int:
        """Move the caller's read marker forward; returns the unread count after it."""
        conversation_id = check_id(conversation_id, "conversation_id")
        if not 0 < message_id <= MAX_MESSAGE_ID:
            raise InvalidArgument.field("message_id", "must be a message id (1 or more)")
        member_ids = await self._membership.require_member(caller, conversation_id)
        try:
            current = await self._membership.read_marker(conversation_id, caller)
            # a marker past the newest message would count later messages as read
            message_id = min(message_id, await self._messages.max_message_id(conversation_id))
        except Unavailable:  # the outbox applies markers forward-only all the same
            current = 0
        moved = message_id > current
        if moved:
            marker = ReadMarker(conversation_id, caller, message_id, self._clock())
            await self._writes.write([marker])
        unread: int | None
        try:
            counts = await self._messages.count_unread(
                caller, {conversation_id: max(current, message_id)}
            )
            unread = counts[conversation_id]
        except Unavailable:
            unread = None
        try:
            if unread is None:  # unknown: counted in SQL again once the database answers
                await self._state.forget_unread(caller, [conversation_id])
            else:
                await self._state.set_unread(caller, {conversation_id: unread})
        except Unavailable:
            _log.debug("Redis unavailable: unread counter of %s not updated", caller)
        if moved:
            await self._events.read_receipt(member_ids, marker)
        return unread or 0

    async def set_typing(self, caller: str, conversation_id: str, typing: bool) -> None:
        """Start (renew) or stop the caller's typing indication; others are told."""
        conversation_id = check_id(conversation_id, "conversation_id")
        member_ids = await self._membership.require_member(caller, conversation_id)
        ttl = self.limits.typing_ttl
        now = self._clock()
        if typing:
            await self._state.set_typing(conversation_id, caller, ttl)
        elif not await self._state.clear_typing(conversation_id, caller):
            return  # was not typing: nothing to tell
        notice = TypingNotice(conversation_id, caller, typing, now + ttl if typing else now)
        await self._events.typing([m for m in member_ids if m != caller], notice)

    async def search(
        self,
        caller: str,
        query: str,
        conversation_id: str,
        page_size: int,
        page_token: str,
    ) -> tuple[list[ChatMessage], str]:
        """The caller's messages containing ``query``, newest first."""
        query = check_query(query)
        limit = page_limit(page_size)
        if conversation_id:
            conversation = await self._membership.load(check_id(conversation_id, "conversation_id"))
            Membership.require(caller, conversation_id, conversation.member_ids)
        scope = {"user": caller, "query": query, "conversation": conversation_id}
        cursor = decode_page_token(page_token, "search", scope)
        before: tuple[float, str, int] | None = None
        if cursor is not None:
            if len(cursor) != 3 or not isinstance(cursor[1], str) or not isinstance(cursor[2], int):
                raise InvalidArgument.field("page_token", "is not a valid page token")
            before = (time_from_cursor(cursor[0]), cursor[1], cursor[2])
        found = await self._messages.search(
            caller, query, conversation_id or None, before, limit + 1
        )
        page = found[:limit]
        token = ""
        if len(found) > limit:
            last = page[-1]
            token = encode_page_token(
                "search",
                scope,
                (time_in_cursor(last.created_at), last.conversation_id, last.message_id),
            )
        return page, token
