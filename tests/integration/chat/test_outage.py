"""The chat & journal database goes down: sends keep being acknowledged and delivered, the
outbox survives a UCServer restart, and everything reaches the database once it returns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest

from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.journal.v1 import journal_pb2
from procall.api.journal.v1 import journal_service_pb2 as journal_pb
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.settings import Settings
from tests.helpers.postgres import PostgresCluster
from tests.helpers.streams import EventStream
from tests.helpers.topology import StartApp, System, error_info, login, operator_channel, wait_for
from tests.integration.chat.conftest import User


@pytest.fixture
def own_postgres(postgres_available: None) -> Iterator[PostgresCluster]:
    """A cluster of this test's own, which it may crash."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def chat_url(own_postgres: PostgresCluster) -> str:
    return own_postgres.create_database()


async def _send(
    user: User, conversation_id: str, text: str, request_id: str = ""
) -> chat_pb2.Message:
    reply = await user.chat.SendMessage(
        chat_pb.SendMessageRequest(
            conversation_id=conversation_id, text=text, request_id=request_id or uuid.uuid4().hex
        ),
        metadata=user.metadata,
    )
    return reply.message


async def _history(user: User, conversation_id: str) -> list[chat_pb2.Message]:
    reply = await user.chat.ListMessages(
        chat_pb.ListMessagesRequest(
            conversation_id=conversation_id,
            direction=chat_pb.LIST_DIRECTION_FORWARD,
            page_size=500,
        ),
        metadata=user.metadata,
    )
    return list(reply.messages)


async def _outbox_reported(system: System, wanted: Callable[[int], bool]) -> bool:
    """Whether every UCServer reports an outbox depth (and degraded state) as ``wanted``."""
    async with operator_channel(system.lookup.address, target="lookup") as channel:
        reply = await lookup_grpc.LookupServiceStub(channel).ListServers(
            lookup_pb.ListServersRequest(role=lookup_pb2.ROLE_UCSERVER)
        )
    return len(reply.servers) == 2 and all(
        wanted(s.outbox_depth) and s.degraded == (s.outbox_depth > 0) for s in reply.servers
    )


async def _history_when_back(
    user: User, conversation_id: str, count: int
) -> list[chat_pb2.Message]:
    found: list[chat_pb2.Message] = []

    async def complete() -> bool:
        nonlocal found
        try:
            found = await _history(user, conversation_id)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            return False
        return len(found) >= count

    await wait_for(complete, timeout=30)
    return found


async def test_nothing_is_lost_while_the_database_is_down(
    system: System,
    users: dict[str, User],
    own_postgres: PostgresCluster,
    start_app: StartApp,
) -> None:
    alice, bob = users["alice"], users["bob"]
    # bob's other client (its own session): it also gets what bob sends from his first one
    bob_stream = EventStream(bob.address, (await login(bob.address, "bob")).session_token)
    await bob_stream.open()
    try:
        created = await alice.chat.CreateConversation(
            chat_pb.CreateConversationRequest(
                kind=chat_pb2.CONVERSATION_KIND_DIRECT, member_user_ids=[bob.user_id]
            ),
            metadata=alice.metadata,
        )
        conversation_id = created.conversation.conversation_id
        sent = [await _send(alice, conversation_id, f"before {i}") for i in range(3)]

        await asyncio.to_thread(own_postgres.stop, "immediate")
        sent += [await _send(alice, conversation_id, f"during {i} ✓") for i in range(10)]
        sent += [await _send(bob, conversation_id, f"bob during {i}") for i in range(5)]
        live = [
            (await bob_stream.next_of("message_created")).message_created.message for _ in range(18)
        ]
        assert [m.message_id for m in live] == list(range(1, 19))
        note = await alice.journal.AddJournalEntry(
            journal_pb.AddJournalEntryRequest(
                entry=journal_pb2.JournalEntry(text="written during the outage", request_id="n1")
            ),
            metadata=alice.metadata,
        )
        await wait_for(lambda: _outbox_reported(system, lambda depth: depth > 0))
        with pytest.raises(grpc.aio.AioRpcError) as history:
            await _history(bob, conversation_id)
        assert history.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(history.value).metadata["backend"] == "chat and journal database"

        # restart alice's server while her sends wait in its outbox
        uc1 = system.ucservers["uc-1"]
        settings: Settings = uc1.settings
        await uc1.stop(0)
        restarted = await start_app("ucserver", settings)
        relogin = await login(restarted.address, "alice")
        alice = User("alice", alice.user_id, restarted.address, relogin.session_token)
        sent.append(await _send(alice, conversation_id, "after the restart"))

        await asyncio.to_thread(own_postgres.start)
        stored = await _history_when_back(bob, conversation_id, 19)
        assert [(m.message_id, m.text) for m in stored] == [(m.message_id, m.text) for m in sent]
        assert [m.message_id for m in stored] == list(range(1, 20))
        await wait_for(lambda: _outbox_reported(system, lambda depth: depth == 0))
        notes = await alice.journal.ListJournalEntries(
            journal_pb.ListJournalEntriesRequest(), metadata=alice.metadata
        )
        assert [e.entry_id for e in notes.entries] == [note.entry.entry_id]
        await alice.channel.close()
    finally:
        await bob_stream.close()


def _tiny_outbox(settings: Settings) -> None:
    settings.chat.outbox_max_records = 5


@pytest.fixture
async def tiny_outbox_system(
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    chat_url: str,
) -> System:
    from tests.helpers.topology import fast_settings, start_system
    from tests.integration.chat.conftest import HOMES

    def settings() -> Settings:
        made = fast_settings(make_settings, redis_url)
        made.database.chat_url = chat_url
        return made

    return await start_system(start_app, settings, HOMES, configure_ucserver=_tiny_outbox)


async def test_a_full_outbox_refuses_sends_instead_of_losing_them(
    tiny_outbox_system: System, own_postgres: PostgresCluster
) -> None:
    system = tiny_outbox_system
    address = system.ucservers["uc-1"].address
    alice = User(
        "alice", system.users["alice"], address, (await login(address, "alice")).session_token
    )
    bob_id = system.users["bob"]
    try:
        created = await alice.chat.CreateConversation(
            chat_pb.CreateConversationRequest(
                kind=chat_pb2.CONVERSATION_KIND_DIRECT, member_user_ids=[bob_id]
            ),
            metadata=alice.metadata,
        )
        conversation_id = created.conversation.conversation_id
        await asyncio.to_thread(own_postgres.stop, "immediate")
        accepted = [await _send(alice, conversation_id, f"queued {i}") for i in range(5)]
        with pytest.raises(grpc.aio.AioRpcError) as full:
            await _send(alice, conversation_id, "one too many", request_id="last")
        assert full.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(full.value).reason == "OUTBOX_FULL"
        await asyncio.to_thread(own_postgres.start)
        stored = await _history_when_back(alice, conversation_id, 5)
        assert [m.text for m in stored] == [m.text for m in accepted]
        retried = await _send(alice, conversation_id, "one too many", request_id="last")
        final = await _history(alice, conversation_id)
        assert [m.text for m in final][-1] == "one too many"
        assert final[-1].message_id == retried.message_id
        assert len(final) == 6
    finally:
        await alice.channel.close()


async def test_a_ucserver_stops_promptly_while_the_database_is_down(
    system: System, users: dict[str, User], own_postgres: PostgresCluster
) -> None:
    alice, bob = users["alice"], users["bob"]
    created = await alice.chat.CreateConversation(
        chat_pb.CreateConversationRequest(
            kind=chat_pb2.CONVERSATION_KIND_DIRECT, member_user_ids=[bob.user_id]
        ),
        metadata=alice.metadata,
    )
    await asyncio.to_thread(own_postgres.stop, "immediate")
    await _send(alice, created.conversation.conversation_id, "queued")
    for app in system.ucservers.values():
        await asyncio.wait_for(app.stop(0), 20)
