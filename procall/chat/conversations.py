"""Creating, listing and changing conversations (the use cases behind ChatService)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from procall.chat.members import Membership
from procall.chat.model import (
    MAX_GROUP_MEMBERS,
    Conversation,
    ConversationKind,
    MemberConversation,
    direct_conversation_id,
)
from procall.chat.ports import (
    ChatEventSink,
    ChatState,
    ConversationStore,
    MessageStore,
    UserDirectory,
)
from procall.chat.validation import check_id, check_member_ids, check_request_id, check_title
from procall.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from procall.paging import (
    decode_page_token,
    encode_page_token,
    time_from_cursor,
    time_in_cursor,
)

__all__ = ["MAX_PAGE_SIZE", "Conversations", "UserCheck", "page_limit"]

_log = logging.getLogger(__name__)
_GROUP_NAMESPACE = uuid.UUID("0b7e53a4-61d6-4d35-a1a5-0a6fd2f1b8a1")
#: Largest page of conversations or messages.
MAX_PAGE_SIZE = 500
_DEFAULT_PAGE_SIZE = 50


def page_limit(requested: int) -> int:
    """The page size to use for a request (default 50, at most ``MAX_PAGE_SIZE``)."""
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(requested or _DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class Conversations:
    """Conversations as their members see them."""

    def __init__(
        self,
        conversations: ConversationStore,
        messages: MessageStore,
        state: ChatState,
        membership: Membership,
        users: UserCheck,
        events: ChatEventSink,
        clock: Callable[[], float],
    ) -> None:
        self._conversations = conversations
        self._messages = messages
        self._state = state
        self._membership = membership
        self._users = users
        self._events = events
        self._clock = clock

    async def create(
        self,
        caller: str,
        kind: ConversationKind | None,
        title: str,
        member_ids: Sequence[str],
        request_id: str,
    ) -> MemberConversation:
        """A new group, or the pair's 1:1 conversation (created on first use)."""
        if kind is None:
            raise InvalidArgument.field("kind", "is required (DIRECT or GROUP)")
        request_id = check_request_id(request_id, required=False)
        others = [m for m in check_member_ids(member_ids) if m != caller]
        now = self._clock()
        if kind is ConversationKind.DIRECT:
            if len(others) != 1:
                raise InvalidArgument.field(
                    "member_user_ids", "a 1:1 conversation has exactly one other member"
                )
            if title:
                raise InvalidArgument.field("title", "a 1:1 conversation has no title")
            conversation_id = direct_conversation_id(caller, others[0])
        else:
            title = check_title(title)
            _check_group_size(len(others) + 1, "member_user_ids")
            name = uuid.uuid5(_GROUP_NAMESPACE, f"{caller}\x00{request_id}") if request_id else None
            conversation_id = f"g-{(name or uuid.uuid4()).hex}"
        await self._users.require_known(others)
        stored = await self._conversations.get(conversation_id)
        created = stored is None
        if stored is None:
            wanted = Conversation(conversation_id, kind, title, (caller, *others), now, now)
            stored = await self._conversations.create(wanted)
        if caller not in stored.member_ids:  # a retried create after the caller left
            raise FailedPrecondition(
                "this request id created a conversation you have left; use a new request id",
                metadata={"conversation_id": conversation_id},
            )
        await self._membership.remember(stored)
        if created:  # new: tell every member's clients
            await self._events.conversation_changed(stored, ())
        return await self._view(stored, caller)

    async def get(self, caller: str, conversation_id: str) -> MemberConversation:
        """One conversation of the caller's."""
        conversation = await self._membership.load(check_id(conversation_id, "conversation_id"))
        Membership.require(caller, conversation.conversation_id, conversation.member_ids)
        return await self._view(conversation, caller)

    async def list_mine(
        self, caller: str, page_size: int, page_token: str
    ) -> tuple[list[MemberConversation], str]:
        """The caller's conversations, newest activity first, with unread counts."""
        limit = page_limit(page_size)
        scope = {"user": caller}
        cursor = decode_page_token(page_token, "conversations", scope)
        after: tuple[float, str] | None = None
        if cursor is not None:
            if len(cursor) != 2 or not isinstance(cursor[1], str):
                raise InvalidArgument.field("page_token", "is not a valid page token")
            after = (time_from_cursor(cursor[0]), cursor[1])
        found = await self._conversations.list_for_member(caller, limit + 1, after)
        page = await self._with_unread(caller, found[:limit])
        token = ""
        if len(found) > limit:
            last = page[-1].conversation
            token = encode_page_token(
                "conversations", scope, (time_in_cursor(last.updated_at), last.conversation_id)
            )
        return page, token

    async def rename(self, caller: str, conversation_id: str, title: str) -> MemberConversation:
        """Give a group a new title."""
        conversation = await self._group_of(caller, conversation_id)
        changed = await self._conversations.set_title(
            conversation.conversation_id, check_title(title), self._clock()
        )
        await self._announce(changed)
        return await self._view(changed, caller)

    async def add_members(
        self, caller: str, conversation_id: str, user_ids: Sequence[str]
    ) -> MemberConversation:
        """Add users to a group; they see its history from now on as read."""
        conversation = await self._group_of(caller, conversation_id)
        present = conversation.member_ids
        new = [u for u in check_member_ids(user_ids, "user_ids") if u not in present]
        if not new:
            return await self._view(conversation, caller)
        _check_group_size(len(present) + len(new), "user_ids")
        await self._users.require_known(new)
        changed = await self._conversations.add_members(
            conversation.conversation_id, new, self._clock()
        )
        await self._membership.remember(changed)
        await self._announce(changed)
        return await self._view(changed, caller)

    async def remove_members(
        self, caller: str, conversation_id: str, user_ids: Sequence[str]
    ) -> MemberConversation:
        """Remove users from a group (any member may)."""
        conversation = await self._group_of(caller, conversation_id)
        gone = [u for u in check_member_ids(user_ids, "user_ids") if u in conversation.member_ids]
        if not gone:
            return await self._view(conversation, caller)
        # uncache them first, and strictly: a cached member is believed (sends, delivery),
        # so a cache the refresh below failed to update would keep them in for a day
        remaining = [m for m in conversation.member_ids if m not in gone]
        await self._state.set_members(conversation.conversation_id, remaining)
        changed = await self._conversations.remove_members(
            conversation.conversation_id, gone, self._clock()
        )
        await self._membership.remember(changed)
        await self._announce(changed, removed=gone)
        if caller in gone:
            return MemberConversation(changed, 0)
        return await self._view(changed, caller)

    async def leave(self, caller: str, conversation_id: str) -> None:
        """The caller leaves a group."""
        await self.remove_members(caller, conversation_id, [caller])

    # -- helpers ------------------------------------------------------------------------

    async def _group_of(self, caller: str, conversation_id: str) -> Conversation:
        conversation = await self._membership.load(check_id(conversation_id, "conversation_id"))
        Membership.require(caller, conversation.conversation_id, conversation.member_ids)
        if conversation.kind is not ConversationKind.GROUP:
            raise FailedPrecondition(
                "a 1:1 conversation has no title and a fixed pair of members",
                metadata={"conversation_id": conversation.conversation_id},
            )
        return conversation

    async def _announce(self, conversation: Conversation, removed: Sequence[str] = ()) -> None:
        await self._events.conversation_changed(conversation, removed)

    async def _view(self, conversation: Conversation, caller: str) -> MemberConversation:
        marker = await self._conversations.read_marker(conversation.conversation_id, caller)
        view = MemberConversation(conversation, marker)
        return (await self._with_unread(caller, [view]))[0]

    async def _with_unread(
        self, caller: str, views: Sequence[MemberConversation]
    ) -> list[MemberConversation]:
        """Fill unread counts: Redis counters, rebuilt from SQL where Redis lost them."""
        ids = [v.conversation.conversation_id for v in views]
        try:
            known = await self._state.unread(caller, ids)
        except Unavailable:
            known = {}
        missing = {
            v.conversation.conversation_id: v.read_message_id
            for v in views
            if v.conversation.conversation_id not in known
        }
        if missing:
            counted = await self._messages.count_unread(caller, missing)
            known.update(counted)
            try:
                await self._state.set_unread(caller, counted)
            except Unavailable:
                _log.debug("Redis unavailable: unread counters of %s not cached", caller)
        return [
            MemberConversation(
                v.conversation, v.read_message_id, known.get(v.conversation.conversation_id, 0)
            )
            for v in views
        ]


def _check_group_size(size: int, field: str) -> None:
    if size > MAX_GROUP_MEMBERS:
        raise InvalidArgument.field(field, f"a group has at most {MAX_GROUP_MEMBERS} members")


class UserCheck:
    """Refuses member lists naming users the Directory does not know."""

    def __init__(self, directory: UserDirectory) -> None:
        self._directory = directory

    async def require_known(self, user_ids: Sequence[str]) -> None:
        """``NotFound`` naming the first unknown user."""
        if not user_ids:
            return
        unknown = await self._directory.unknown_users(user_ids)
        if unknown:
            raise NotFound(f"user {unknown[0]!r} does not exist", metadata={"user_id": unknown[0]})
