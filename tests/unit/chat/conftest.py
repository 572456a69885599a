"""The chat use cases wired to the in-memory fakes of ``fakes.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from procall.chat.conversations import Conversations, UserCheck
from procall.chat.members import Membership
from procall.chat.messaging import Messaging
from procall.chat.model import ConversationKind, MemberConversation
from tests.unit.chat.fakes import (
    FakeClock,
    MemoryChatState,
    MemoryConversationStore,
    MemoryDurableWrites,
    MemoryMessageStore,
    MemoryUserDirectory,
    RecordingChatEvents,
    Tables,
)

USERS = ("alice", "bob", "carol", "dave")


@pytest.fixture(autouse=True)
async def _collect_grpc_garbage() -> AsyncIterator[None]:
    """No gRPC object is made here: skip the suite's full ``gc.collect()`` after each test
    (close to a second per test on a busy machine)."""
    yield


@dataclass
class ChatWorld:
    """One UCServer's chat use cases over shared fake Redis and SQL."""

    clock: FakeClock
    tables: Tables
    conversation_store: MemoryConversationStore
    message_store: MemoryMessageStore
    state: MemoryChatState
    writes: MemoryDurableWrites
    events: RecordingChatEvents
    directory: MemoryUserDirectory
    membership: Membership
    conversations: Conversations
    messaging: Messaging

    def sql_down(self, down: bool = True) -> None:
        """The chat & journal database stops (or starts) answering; writes get queued."""
        self.conversation_store.down = down
        self.message_store.down = down
        self.writes.central_down = down

    def sql_back(self) -> None:
        """The database answers again and the outbox is flushed into it."""
        self.sql_down(False)
        self.writes.flush()

    async def direct(self, caller: str, other: str) -> str:
        """The id of the pair's 1:1 conversation (created when needed)."""
        view = await self.conversations.create(
            caller, ConversationKind.DIRECT, "", [other], request_id=""
        )
        return view.conversation.conversation_id

    async def group(self, caller: str, *others: str, title: str = "Team") -> str:
        """A new group's id."""
        view = await self.conversations.create(
            caller, ConversationKind.GROUP, title, list(others), request_id=""
        )
        return view.conversation.conversation_id

    async def send(self, caller: str, conversation_id: str, text: str, request_id: str = "") -> int:
        """Send (advancing the clock first); the message id."""
        self.clock.advance()
        request_id = request_id or f"r-{len(self.writes.batches)}-{self.clock.now}"
        sent = await self.messaging.send(caller, conversation_id, text, request_id)
        return sent.message_id

    async def view(self, caller: str, conversation_id: str) -> MemberConversation:
        """The conversation as ``caller`` sees it."""
        return await self.conversations.get(caller, conversation_id)


def make_world(users: tuple[str, ...] = USERS) -> ChatWorld:
    """Fresh fakes and the use cases over them."""
    clock = FakeClock()
    tables = Tables()
    conversation_store = MemoryConversationStore(tables)
    message_store = MemoryMessageStore(tables)
    state = MemoryChatState()
    writes = MemoryDurableWrites(tables)
    events = RecordingChatEvents()
    directory = MemoryUserDirectory(users)
    membership = Membership(conversation_store, state)
    conversations = Conversations(
        conversation_store,
        message_store,
        state,
        membership,
        UserCheck(directory),
        events,
        clock,
    )
    messaging = Messaging(message_store, state, membership, writes, events, clock)
    return ChatWorld(
        clock,
        tables,
        conversation_store,
        message_store,
        state,
        writes,
        events,
        directory,
        membership,
        conversations,
        messaging,
    )


@pytest.fixture
def world() -> ChatWorld:
    return make_world()
