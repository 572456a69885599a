"""One behaviour suite for the ``ContactStore`` port, run against the in-memory fake of the
presence unit tests and against ``SqlContactStore`` on migrated SQLite and PostgreSQL
databases: the direct tests of the SQL store, and the check that the fake does not drift."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from procall.presence.ports import ContactStore
from procall.storage.sql.contacts import SqlContactStore
from tests.integration.ports.conftest import SQL_BACKENDS, sql_database
from tests.unit.presence.fakes import MemoryContactStore


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ContactStore]:
    if request.param == "memory":
        yield MemoryContactStore()
        return
    database = await sql_database(request.param, request, tmp_path)
    try:
        yield SqlContactStore(database)
    finally:
        await database.dispose()


async def test_contacts_come_back_in_the_order_added(store: ContactStore) -> None:
    assert await store.contacts_of("alice") == []
    await store.add("alice", ["carol", "bob"])
    await store.add("alice", ["dave"])
    assert await store.contacts_of("alice") == ["carol", "bob", "dave"]
    assert await store.contacts_of("bob") == [], "per owner"


async def test_repeated_and_own_ids_are_left_alone(store: ContactStore) -> None:
    await store.add("alice", ["bob", "carol"])
    await store.add("alice", ["carol", "alice", "dave", "dave", "bob"])
    assert await store.contacts_of("alice") == ["bob", "carol", "dave"]


async def test_removed_contacts_are_gone_and_come_back_at_the_end(store: ContactStore) -> None:
    await store.add("alice", ["bob", "carol", "dave"])
    await store.add("bob", ["carol"])
    await store.remove("alice", ["carol", "zoe"])
    await store.remove("alice", [])
    assert await store.contacts_of("alice") == ["bob", "dave"]
    assert await store.contacts_of("bob") == ["carol"], "per owner"
    await store.add("alice", ["carol"])
    assert await store.contacts_of("alice") == ["bob", "dave", "carol"]


async def test_several_lists_read_at_once_match_each_read_alone(store: ContactStore) -> None:
    await store.add("alice", ["carol", "bob"])
    await store.add("bob", ["dave"])
    await store.add("alice", ["erin"])
    assert await store.contacts_of_many(["bob", "zoe", "alice"]) == {
        "alice": ["carol", "bob", "erin"],
        "bob": ["dave"],
        "zoe": [],
    }
    assert await store.contacts_of_many([]) == {}
