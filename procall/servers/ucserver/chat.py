"""The chat and journal part of a UCServer: durable writes, the use cases, the servicers.

Events go out through the root's ``EventRouter`` (shared with every other part).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from procall.api.journal.v1 import journal_service_pb2_grpc as journal_grpc
from procall.api.session.v1 import session_pb2
from procall.chat.conversations import Conversations, UserCheck
from procall.chat.members import Membership
from procall.chat.messaging import Messaging, MessagingLimits
from procall.chat.model import ChatMessage, ReadMarker
from procall.chat.ports import ChatState, ConversationStore, MessageStore
from procall.journal.ports import JournalStore
from procall.journal.service import Journal
from procall.outbox.ports import CentralWriter
from procall.outbox.writer import DurableWriter
from procall.servers.peering.router import EventRouter
from procall.servers.runtime.app import ServerApp, binding
from procall.servers.runtime.grpc_server import ServiceBinding
from procall.servers.ucserver.chat_events import ChatEvents
from procall.servers.ucserver.chat_servicer import ChatServicer
from procall.servers.ucserver.journal_servicer import JournalServicer
from procall.servers.upstream.clients import UpstreamClients
from procall.session.manager import SessionManager
from procall.settings import Settings
from procall.storage.outbox import SqliteOutbox
from procall.telemetry.tracing import step_span

__all__ = ["ChatComponent"]

_log = logging.getLogger(__name__)


class ChatComponent:
    """ChatService and JournalService of a UCServer, with the outbox that keeps writes."""

    def __init__(
        self,
        settings: Settings,
        *,
        conversations: ConversationStore,
        messages: MessageStore,
        state: ChatState,
        journal: JournalStore,
        central: CentralWriter,
        outbox: SqliteOutbox,
        router: EventRouter,
        sessions: SessionManager[session_pb2.Event],
        clients: UpstreamClients,
    ) -> None:
        chat = settings.chat
        self._sessions = sessions
        self._outbox = outbox
        self._writer = DurableWriter(
            central,
            outbox,
            flush_batch=chat.flush_batch,
            flush_retry_seconds=chat.flush_retry_seconds,
        )
        events = ChatEvents(router)
        membership = Membership(conversations, state)
        self._conversations = Conversations(
            conversations,
            messages,
            state,
            membership,
            UserCheck(clients),
            events,
            time.time,
        )
        self._messaging = Messaging(
            messages,
            state,
            membership,
            _TracedWrites(self._writer, settings.server.server_id),
            events,
            time.time,
            MessagingLimits(chat.request_id_ttl_seconds, chat.typing_ttl_seconds),
        )
        #: The journal use cases (the call flow records entries through it).
        self.journal = Journal(journal, self._writer, events, time.time)

    @property
    def messaging(self) -> Messaging:
        """The message flow (its ``limits`` follow the configuration)."""
        return self._messaging

    @property
    def degraded(self) -> bool:
        """Whether writes go to the local outbox (the central database is unreachable)."""
        return not self._writer.central_available

    @property
    def outbox_depth(self) -> int:
        """Writes waiting in the local outbox for the central database."""
        return self._writer.depth

    def bindings(self) -> list[ServiceBinding]:
        """ChatService and JournalService."""
        return [
            binding(
                ChatServicer(self._conversations, self._messaging, self._sessions),
                chat_pb,
                chat_grpc.add_ChatServiceServicer_to_server,
                "ChatService",
            ),
            binding(
                JournalServicer(self.journal, self._sessions),
                journal_pb,
                journal_grpc.add_JournalServiceServicer_to_server,
                "JournalService",
            ),
        ]

    async def start(self, app: ServerApp) -> None:
        """Open the outbox (what a previous run left in it is flushed first)."""
        await self._outbox.open()
        if self._outbox.depth:
            _log.warning("outbox holds %d writes from before: flushing them", self._outbox.depth)
        self._writer.start()

    async def stop(self, app: ServerApp) -> None:
        """Finish pending writes (to the database or the outbox), then close the outbox."""
        # a flush stuck on a dying database is cut short: its records stay in the outbox
        await self._writer.stop(timeout=max(1.0, app.settings.server.grace_seconds))
        await self._outbox.close()


class _TracedWrites:
    """The chat write path, with a message's wait for its group commit (the SQL insert,
    made for many messages at once by the writer's own task) as a ``chat store`` span in
    the sender's trace."""

    def __init__(self, writer: DurableWriter, server_id: str) -> None:
        self._writer = writer
        self._server_id = server_id

    async def write(self, records: Sequence[ChatMessage | ReadMarker]) -> object:
        """``DurableWriter.write``, traced."""
        with step_span("chat store", self._server_id, **{"procall.records": len(records)}):
            return await self._writer.write(records)

    async def find_queued_message(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        """``DurableWriter.find_queued_message``."""
        return await self._writer.find_queued_message(conversation_id, sender_id, request_id)
