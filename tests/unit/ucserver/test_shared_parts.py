"""The pieces the UCServer root builds once: the dispatcher of peer events, the schema
migration hook."""

from __future__ import annotations

import asyncio

from procall.api.chat.v1 import chat_pb2
from procall.api.presence.v1 import presence_pb2
from procall.api.session.v1 import session_pb2
from procall.errors import Unavailable
from procall.servers.peering.dispatch import PeerEventDispatcher
from procall.servers.runtime.app import ServerApp
from procall.servers.ucserver.schema import SchemaMigration
from procall.session.hub import SessionHub
from procall.session.tokens import SessionClaims
from procall.settings import Settings


def _hub() -> SessionHub[session_pb2.Event]:
    hub = SessionHub[session_pb2.Event](lambda: 0.0)
    hub.add(SessionClaims("s1", "bob", "bob", "uc-1", False, 0.0, 1e12), "desk")
    return hub


def _payloads(hub: SessionHub[session_pb2.Event]) -> list[str]:
    session = hub.get("s1")
    assert session is not None
    return [str(e.payload.WhichOneof("payload")) for e in session.log.after(0)]


async def test_presence_events_go_to_presence_and_the_rest_to_the_sessions() -> None:
    hub = _hub()
    to_presence: list[session_pb2.Event] = []

    async def presence(event: session_pb2.Event) -> None:
        to_presence.append(event)

    dispatch = PeerEventDispatcher(hub, presence)
    changed = session_pb2.Event(
        presence_changed=presence_pb2.PresenceChanged(
            presence=presence_pb2.Presence(user_id="carol")
        )
    )
    message = session_pb2.Event(
        message_created=chat_pb2.MessageCreated(message=chat_pb2.Message(text="hi"))
    )
    await dispatch([], changed)
    await dispatch(["bob"], message)
    assert to_presence == [changed]  # as it came, not decoded and encoded again
    assert _payloads(hub) == ["message_created"]  # presence is not pushed to sessions here


class _Database:
    """A migration that fails while ``down``; counts its attempts."""

    def __init__(self, down: bool) -> None:
        self.down = down
        self.attempts = 0

    async def migrate(self) -> None:
        self.attempts += 1
        if self.down:
            raise Unavailable.backend("chat and journal database")


def _app() -> ServerApp:
    return ServerApp("ucserver", Settings(), [])


async def test_the_migration_runs_at_start() -> None:
    database = _Database(down=False)
    schema = SchemaMigration(database.migrate, "chat and journal database", 0.01)
    await schema.start(_app())
    assert schema.done and database.attempts == 1
    await schema.stop(_app())


async def test_a_postponed_migration_is_retried_until_the_database_answers() -> None:
    database = _Database(down=True)
    schema = SchemaMigration(database.migrate, "chat and journal database", 0.01)
    await schema.start(_app())  # does not fail: the server starts without its database
    assert not schema.done
    await asyncio.sleep(0.05)
    assert not schema.done and database.attempts > 1
    database.down = False
    for _ in range(100):
        if schema.done:
            break
        await asyncio.sleep(0.01)
    assert schema.done
    tried = database.attempts
    await asyncio.sleep(0.05)
    assert database.attempts == tried  # no more attempts once done
    await schema.stop(_app())
