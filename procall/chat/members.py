"""Who belongs to a conversation: the Redis cache in front of the SQL truth."""

from __future__ import annotations

import logging

from procall.chat.model import Conversation
from procall.chat.ports import ChatState, ConversationStore
from procall.errors import NotFound, PermissionDenied, Unavailable

__all__ = ["Membership"]

_log = logging.getLogger(__name__)


class Membership:
    """Answers "who is in this conversation" and "may this user act in it"."""

    def __init__(self, conversations: ConversationStore, state: ChatState) -> None:
        self._conversations = conversations
        self._state = state

    async def members(self, conversation_id: str) -> tuple[str, ...]:
        """The members, from the cache when it has them (so sends work while SQL is down)."""
        try:
            cached = await self._state.members(conversation_id)
        except Unavailable:
            cached = None
        if cached is not None:
            return cached
        conversation = await self.load(conversation_id)
        return conversation.member_ids

    async def load(self, conversation_id: str) -> Conversation:
        """The conversation from SQL (refreshing the cache); ``NotFound`` when there is none."""
        conversation = await self._conversations.get(conversation_id)
        if conversation is None:
            raise NotFound(
                f"conversation {conversation_id!r} does not exist",
                metadata={"conversation_id": conversation_id},
            )
        await self.remember(conversation)
        return conversation

    async def remember(self, conversation: Conversation) -> None:
        """Refresh the cached members (a Redis outage only costs a later SQL read)."""
        try:
            await self._state.set_members(conversation.conversation_id, conversation.member_ids)
            # so that sends keep their ids even when the database goes down before the
            # first one (without a known sequence a send must read the newest id from SQL)
            await self._state.ensure_sequence(
                conversation.conversation_id, conversation.last_message_id
            )
        except Unavailable:
            _log.debug("Redis unavailable: members of %s not cached", conversation.conversation_id)

    async def read_marker(self, conversation_id: str, user_id: str) -> int:
        """A member's stored read marker (0 when none)."""
        return await self._conversations.read_marker(conversation_id, user_id)

    @staticmethod
    def require(user_id: str, conversation_id: str, member_ids: tuple[str, ...]) -> None:
        """``PermissionDenied`` unless ``user_id`` is a member."""
        if user_id not in member_ids:
            raise PermissionDenied(
                "you are not a member of this conversation",
                reason="NOT_A_MEMBER",
                metadata={"conversation_id": conversation_id},
            )

    async def require_member(self, user_id: str, conversation_id: str) -> tuple[str, ...]:
        """The members, after checking that ``user_id`` is one of them."""
        member_ids = await self.members(conversation_id)
        if user_id not in member_ids:
            # the cache may lag behind a change made a moment ago: ask SQL before refusing
            try:
                member_ids = (await self.load(conversation_id)).member_ids
            except Unavailable:
                pass
        self.require(user_id, conversation_id, member_ids)
        return member_ids
