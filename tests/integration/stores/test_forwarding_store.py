"""The forwarding store's behaviour suite, on the in-memory fake, SQLite and PostgreSQL.

The fake the forwarding unit tests use (``tests/unit/calls/forwarding_fakes.py``) must
pass the very suite ``SqlForwardingStore`` passes. Below the suite: the migration builds
the table ``procall/storage/sql/forwarding.py`` declares, on every dialect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from procall.calls.forwarding import (
    ForwardingCondition,
    ForwardingRule,
    ForwardingService,
    ForwardingStore,
    NoAnswer,
    Route,
)
from procall.errors import FailedPrecondition, Unavailable
from procall.launch.redis import free_port
from procall.storage.sql import SqlDatabase
from procall.storage.sql.forwarding import SqlForwardingStore, call_forwarding
from procall.storage.sql.migrate import migration_sql
from tests.helpers.sql_stores import SQL_BACKENDS, MigratedDatabases, check_migration
from tests.unit.calls.forwarding_fakes import (
    FakeDelegations,
    FakeReachability,
    FakeUsers,
    MemoryForwardingStore,
)

_PG_DATABASE = "forwarding_tests"

ALWAYS = ForwardingCondition.ALWAYS
BUSY = ForwardingCondition.BUSY
NO_ANSWER = ForwardingCondition.NO_ANSWER
OFFLINE = ForwardingCondition.OFFLINE


DATABASES = MigratedDatabases(_PG_DATABASE, call_forwarding.name)


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ForwardingStore]:
    """The forwarding store on the fake, on SQLite and on PostgreSQL in turn."""
    if request.param == "memory":
        yield MemoryForwardingStore()
        return
    url = DATABASES.url(request.param, request, tmp_path)
    database = SqlDatabase(url, name="chat and journal database", connect_timeout=2.0)
    try:
        yield SqlForwardingStore(database)
    finally:
        await database.dispose()


def rule(
    condition: ForwardingCondition, target: str, timeout: float = 20.0, *, enabled: bool = True
) -> ForwardingRule:
    return ForwardingRule(condition, target, no_answer_timeout=timeout, enabled=enabled)


# -- the behaviour suite ------------------------------------------------------------------------


async def test_a_user_without_rules_has_none(store: ForwardingStore) -> None:
    assert await store.rules_of("alice") == []


async def test_rules_come_back_in_order_with_every_field(store: ForwardingStore) -> None:
    rules = [
        rule(OFFLINE, "dave"),
        rule(NO_ANSWER, "carol", 17.25),
        rule(ALWAYS, "bob", enabled=False),
        rule(BUSY, "ünïcødé-ユーザー"),
    ]
    await store.replace("alice", rules)
    assert await store.rules_of("alice") == rules
    assert [type(r.condition) for r in await store.rules_of("alice")] == [ForwardingCondition] * 4


async def test_replace_replaces_everything(store: ForwardingStore) -> None:
    await store.replace("alice", [rule(ALWAYS, "bob"), rule(BUSY, "carol"), rule(OFFLINE, "d")])
    await store.replace("alice", [rule(BUSY, "erin"), rule(ALWAYS, "bob", enabled=False)])
    assert await store.rules_of("alice") == [rule(BUSY, "erin"), rule(ALWAYS, "bob", enabled=False)]
    await store.replace("alice", [])
    assert await store.rules_of("alice") == []
    await store.replace("alice", [])
    assert await store.rules_of("alice") == []


async def test_users_are_apart(store: ForwardingStore) -> None:
    await store.replace("alice", [rule(ALWAYS, "bob")])
    await store.replace("bob", [rule(ALWAYS, "alice"), rule(NO_ANSWER, "carol", 5.0)])
    await store.replace("carol", [rule(BUSY, "alice")])
    await store.replace("carol", [])
    assert await store.rules_of("alice") == [rule(ALWAYS, "bob")]
    assert await store.rules_of("bob") == [rule(ALWAYS, "alice"), rule(NO_ANSWER, "carol", 5.0)]
    assert await store.rules_of("carol") == []


async def test_the_returned_list_is_the_callers(store: ForwardingStore) -> None:
    await store.replace("alice", [rule(ALWAYS, "bob")])
    found = await store.rules_of("alice")
    found.append(rule(BUSY, "carol"))
    assert await store.rules_of("alice") == [rule(ALWAYS, "bob")]


async def test_concurrent_replaces_leave_one_whole_rule_set(store: ForwardingStore) -> None:
    sets = [
        [rule(ALWAYS, f"target-{n}"), rule(BUSY, f"busy-{n}"), rule(NO_ANSWER, "x", 5.0 + n)]
        for n in range(6)
    ]
    await asyncio.gather(*(store.replace("alice", rules) for rules in sets))
    assert await store.rules_of("alice") in sets


async def test_the_service_sets_and_routes_over_the_store(store: ForwardingStore) -> None:
    service = ForwardingService(store, FakeDelegations(), FakeUsers(["alice", "bob", "carol"]))
    await service.set("bob", "", [rule(NO_ANSWER, "alice", 12.5), rule(ALWAYS, "carol")])
    await service.set("carol", "", [rule(OFFLINE, "alice")])
    with pytest.raises(FailedPrecondition):
        await service.set("carol", "", [rule(ALWAYS, "bob")])
    state = FakeReachability(offline=["carol"])
    assert await service.route("bob", state, caller="alice") == Route(
        "carol", ("bob",), loop_detected=True
    )
    await service.set("bob", "", [rule(NO_ANSWER, "alice", 12.5)])
    assert await service.route("bob", state, caller="carol") == Route(
        "bob", (), NoAnswer("alice", 12.5)
    )


async def test_a_database_that_does_not_answer_is_unavailable() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/forwarding"
    database = SqlDatabase(url, name="chat and journal database", connect_timeout=1.0)
    try:
        store = SqlForwardingStore(database)
        with pytest.raises(Unavailable):
            await store.rules_of("alice")
        with pytest.raises(Unavailable):
            await store.replace("alice", [rule(ALWAYS, "bob")])
    finally:
        await database.dispose()


# -- the schema ---------------------------------------------------------------------------------


async def _check_upgrade(url: str) -> None:
    # the migration builds exactly the table the store module declares
    await check_migration(url, call_forwarding.name, "chat and journal database")


async def test_upgrade_empty_sqlite_to_head(tmp_path: Path) -> None:
    await _check_upgrade(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")


async def test_upgrade_empty_postgres_to_head(postgres_url: str) -> None:
    await _check_upgrade(postgres_url)


def test_migration_renders_sql_server_ddl() -> None:
    ddl = migration_sql("mssql+pyodbc://")
    assert "CREATE TABLE call_forwarding (" in ddl
    assert "no_answer_timeout DOUBLE PRECISION NOT NULL" in ddl
    assert "enabled BIT NOT NULL" in ddl
    assert "CONSTRAINT uq_call_forwarding_user_id_condition UNIQUE" in ddl


async def test_the_sql_store_is_the_port(tmp_path: Path) -> None:
    database = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", name="x")
    try:
        # checked by mypy --strict: the class is structurally its port
        sql: ForwardingStore = SqlForwardingStore(database)
        memory: ForwardingStore = MemoryForwardingStore()
        assert sql and memory
    finally:
        await database.dispose()
