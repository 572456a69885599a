"""JournalService: the caller's journal (thin: decode, call the domain, encode)."""

from __future__ import annotations

import grpc

from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from procall.api.journal.v1 import journal_service_pb2_grpc as journal_grpc
from procall.api.session.v1 import session_pb2
from procall.errors import InvalidArgument
from procall.journal.service import Journal
from procall.servers.codecs.chat import entry_to_proto, journal_kind_from_proto
from procall.servers.codecs.time import seconds_or_none
from procall.servers.runtime.auth import current_claims
from procall.session.manager import SessionManager

__all__ = ["JournalServicer"]

Context = grpc.aio.ServicerContext[object, object]


class JournalServicer(journal_grpc.JournalServiceServicer):
    """Decodes requests, calls the journal use cases, encodes replies."""

    def __init__(self, journal: Journal, sessions: SessionManager[session_pb2.Event]) -> None:
        self._journal = journal
        self._sessions = sessions

    async def ListJournalEntries(
        self, request: journal_pb.ListJournalEntriesRequest, context: Context
    ) -> journal_pb.ListJournalEntriesResponse:
        caller = current_claims().user_id
        kinds = []
        for value in request.kinds:
            kind = journal_kind_from_proto(value)
            if kind is None:
                raise InvalidArgument.field("kinds", f"unknown journal entry kind {value}")
            kinds.append(kind)
        entries, token = await self._journal.page(
            caller,
            kinds,
            seconds_or_none(request.start_time, request.HasField("start_time"), "start_time"),
            seconds_or_none(request.end_time, request.HasField("end_time"), "end_time"),
            request.page_size,
            request.page_token,
        )
        return journal_pb.ListJournalEntriesResponse(
            entries=[entry_to_proto(e) for e in entries], next_page_token=token
        )

    async def AddJournalEntry(
        self, request: journal_pb.AddJournalEntryRequest, context: Context
    ) -> journal_pb.AddJournalEntryResponse:
        caller = current_claims().user_id
        entry = request.entry
        if entry.user_id and entry.user_id != caller:
            raise InvalidArgument.field("entry.user_id", "you can only add to your own journal")
        added = await self._journal.add_note(
            caller,
            journal_kind_from_proto(entry.kind),
            entry.text,
            seconds_or_none(entry.event_time, entry.HasField("event_time"), "entry.event_time"),
            entry.request_id,
        )
        return journal_pb.AddJournalEntryResponse(entry=entry_to_proto(added))

    async def DeleteJournalEntry(
        self, request: journal_pb.DeleteJournalEntryRequest, context: Context
    ) -> journal_pb.DeleteJournalEntryResponse:
        caller = current_claims().user_id
        await self._journal.delete(caller, request.entry_id)
        return journal_pb.DeleteJournalEntryResponse()
