"""Two UCServers sharing a chat database (SQLite, or PostgreSQL where asked) and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.journal.v1 import journal_service_pb2_grpc as journal_grpc
from procall.settings import Settings
from tests.helpers.topology import StartApp, System, auth, fast_settings, login, start_system

HOMES = [("alice", "uc-1"), ("bob", "uc-2"), ("carol", "uc-1"), ("dave", "uc-2")]


class User:
    """A logged-on test user with stubs on its home server."""

    def __init__(self, name: str, user_id: str, address: str, token: str) -> None:
        self.name = name
        self.user_id = user_id
        self.address = address
        self.metadata = auth(token)
        self.token = token
        self.channel = grpc.aio.insecure_channel(address)
        self.chat = chat_grpc.ChatServiceStub(self.channel)
        self.journal = journal_grpc.JournalServiceStub(self.channel)


@pytest.fixture
def chat_url() -> str:
    """The chat database of the system (SQLite in the test's directory by default)."""
    return ""


@pytest.fixture
async def system(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp, chat_url: str
) -> AsyncIterator[System]:
    def settings() -> Settings:
        made = fast_settings(make_settings, redis_url)
        if chat_url:
            made.database.chat_url = chat_url
        return made

    yield await start_system(start_app, settings, HOMES)


@pytest.fixture
async def users(system: System) -> AsyncIterator[dict[str, User]]:
    made = {}
    for name, home in HOMES:
        address = system.ucservers[home].address
        reply = await login(address, name)
        made[name] = User(name, system.users[name], address, reply.session_token)
    yield made
    for user in made.values():
        await user.channel.close()
