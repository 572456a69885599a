"""Chat and journal events, encoded once and routed to their recipients' sessions."""

from __future__ import annotations

from collections.abc import Sequence

from procall.chat.model import ChatMessage, Conversation, ReadMarker
from procall.chat.ports import TypingNotice
from procall.journal.model import JournalEntry
from procall.servers.codecs.chat import (
    conversation_event,
    entry_event,
    message_event,
    receipt_event,
    typing_event,
)
from procall.servers.peering.router import EventRouter

__all__ = ["ChatEvents"]


class ChatEvents:
    """The ``ChatEventSink`` and ``JournalEventSink`` of a UCServer."""

    def __init__(self, router: EventRouter) -> None:
        self._router = router

    async def message_created(
        self, user_ids: Sequence[str], message: ChatMessage, except_session: str = ""
    ) -> None:
        """A new message, to every member's sessions but ``except_session`` (the sending
        one, which has it in its reply; the sender's other clients get it)."""
        await self._router.route(user_ids, message_event(message), except_session)

    async def read_receipt(self, user_ids: Sequence[str], marker: ReadMarker) -> None:
        """A member's read marker moved."""
        await self._router.route(user_ids, receipt_event(marker))

    async def typing(self, user_ids: Sequence[str], notice: TypingNotice) -> None:
        """A member started or stopped typing."""
        await self._router.route(user_ids, typing_event(notice))

    async def conversation_changed(
        self, conversation: Conversation, removed: Sequence[str]
    ) -> None:
        """A conversation was created or changed; ``removed`` users lost it."""
        await self._router.route(conversation.member_ids, conversation_event(conversation, False))
        if removed:
            await self._router.route(removed, conversation_event(conversation, True))

    async def entry_added(self, entry: JournalEntry) -> None:
        """A new entry in a user's journal."""
        await self._router.route([entry.user_id], entry_event(entry))
