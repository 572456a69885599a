"""The journal over gRPC: notes, filters, paging, idempotent adds, deletes, live events."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from procall.api.journal.v1 import journal_pb2
from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from procall.journal.model import JournalEntry, JournalKind
from procall.servers.ucserver.chat import ChatComponent
from tests.helpers.streams import EventStream
from tests.helpers.topology import System
from tests.integration.chat.conftest import User


def _at(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


async def _note(user: User, text: str, when: int, request_id: str = "") -> journal_pb2.JournalEntry:
    reply = await user.journal.AddJournalEntry(
        journal_pb.AddJournalEntryRequest(
            entry=journal_pb2.JournalEntry(text=text, event_time=_at(when), request_id=request_id)
        ),
        metadata=user.metadata,
    )
    return reply.entry


async def _list(user: User, **fields: object) -> journal_pb.ListJournalEntriesResponse:
    return await user.journal.ListJournalEntries(
        journal_pb.ListJournalEntriesRequest(**fields),  # type: ignore[arg-type]
        metadata=user.metadata,
    )


async def test_notes_are_kept_paged_and_deleted(users: dict[str, User]) -> None:
    alice, bob = users["alice"], users["bob"]
    stream = EventStream(alice.address, alice.token)
    await stream.open()
    try:
        first = await _note(alice, "call the plumber", 1_700_000_000, request_id="n-1")
        added = (await stream.next_of("journal_entry_added")).journal_entry_added.entry
        assert added.entry_id == first.entry_id and added.text == "call the plumber"
        again = await _note(alice, "call the plumber", 1_700_000_000, request_id="n-1")
        assert again.entry_id == first.entry_id
        for i in range(4):
            await _note(alice, f"note {i}", 1_700_000_100 + i)
        page = await _list(alice, page_size=3)
        assert [e.text for e in page.entries] == ["note 3", "note 2", "note 1"]
        rest = await _list(alice, page_size=3, page_token=page.next_page_token)
        assert [e.text for e in rest.entries] == ["note 0", "call the plumber"]
        assert rest.next_page_token == ""
        window = await _list(alice, start_time=_at(1_700_000_101), end_time=_at(1_700_000_103))
        assert [e.text for e in window.entries] == ["note 2", "note 1"]
        assert (await _list(bob)).entries == []  # everyone sees only their own journal

        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await bob.journal.DeleteJournalEntry(
                journal_pb.DeleteJournalEntryRequest(entry_id=first.entry_id),
                metadata=bob.metadata,
            )
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
        await alice.journal.DeleteJournalEntry(
            journal_pb.DeleteJournalEntryRequest(entry_id=first.entry_id),
            metadata=alice.metadata,
        )
        assert [e.text for e in (await _list(alice)).entries][-1] == "note 0"
    finally:
        await stream.close()


async def test_clients_may_only_add_notes(users: dict[str, User]) -> None:
    alice = users["alice"]
    bad = [
        journal_pb2.JournalEntry(kind=journal_pb2.JOURNAL_ENTRY_KIND_CALL_MISSED, text="fake"),
        journal_pb2.JournalEntry(text=""),
        journal_pb2.JournalEntry(text="x" * (16 * 1024 + 1)),
        journal_pb2.JournalEntry(text="for bob", user_id=users["bob"].user_id),
    ]
    for entry in bad:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await alice.journal.AddJournalEntry(
                journal_pb.AddJournalEntryRequest(entry=entry), metadata=alice.metadata
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown_kind:
        await _list(alice, kinds=[99])
    assert unknown_kind.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_times_outside_the_timestamp_range_are_invalid_arguments(
    users: dict[str, User],
) -> None:
    """Found by the fuzz test: such a time used to answer INTERNAL (protobuf's ValueError)."""
    alice = users["alice"]
    far = timestamp_pb2.Timestamp(seconds=2**62)
    before_year_one = timestamp_pb2.Timestamp(seconds=-(2**63))
    bad_nanos = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=-1)
    attempts = [
        ("start_time", _list(alice, start_time=far)),
        ("end_time", _list(alice, end_time=before_year_one)),
        (
            "entry.event_time",
            alice.journal.AddJournalEntry(
                journal_pb.AddJournalEntryRequest(
                    entry=journal_pb2.JournalEntry(text="when?", event_time=bad_nanos)
                ),
                metadata=alice.metadata,
            ),
        ),
    ]
    for field, attempt in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await attempt
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith(f"{field}: must be a time from 0001")


async def test_call_entries_reach_the_users_home_server(
    users: dict[str, User], system: System
) -> None:
    """Entries written by the call flow on one server show up for a user homed on another."""
    bob = users["bob"]
    stream = EventStream(bob.address, bob.token)
    await stream.open()
    try:
        chat = system.ucservers["uc-1"].components["chat"]
        assert isinstance(chat, ChatComponent)
        journal = chat.journal  # the call flow records through this
        await journal.record(
            [
                JournalEntry(
                    "call-1-bob", bob.user_id, JournalKind.CALL_MISSED, 1_700_000_500.0,
                    peer_user_id=users["alice"].user_id, call_id="call-1",
                ),
                JournalEntry(
                    "call-2-bob", bob.user_id, JournalKind.CALL_RECEIVED, 1_700_000_600.0,
                    peer_user_id=users["carol"].user_id, call_id="call-2", duration_ms=61_500,
                ),
            ]
        )  # fmt: skip
        live = (await stream.next_of("journal_entry_added")).journal_entry_added.entry
        assert live.call_id == "call-1"
        missed = await _list(bob, kinds=[journal_pb2.JOURNAL_ENTRY_KIND_CALL_MISSED])
        assert [e.call_id for e in missed.entries] == ["call-1"]
        (received,) = (
            await _list(bob, kinds=[journal_pb2.JOURNAL_ENTRY_KIND_CALL_RECEIVED])
        ).entries
        assert (received.duration.seconds, received.duration.nanos) == (61, 500_000_000)
    finally:
        await stream.close()
