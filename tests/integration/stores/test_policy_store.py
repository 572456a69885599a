"""The client policy store, one behaviour suite over the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from procall.policies import ClientFeature, ClientPolicy, PolicyStore, SubjectKind
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.policies import SqlPolicyStore, client_policies
from tests.helpers.sql_stores import SQL_BACKENDS, MigratedDatabases, check_migration
from tests.unit.policies.fakes import MemoryPolicyStore

DATABASES = MigratedDatabases("policy_tests", client_policies.name)


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PolicyStore]:
    """The policy store on the fake, on SQLite and on PostgreSQL in turn."""
    if request.param == "memory":
        yield MemoryPolicyStore()
        return
    url = DATABASES.url(request.param, request, tmp_path)
    database = SqlDatabase(url, name="configuration database", connect_timeout=2.0)
    try:
        yield SqlPolicyStore(database)
    finally:
        await database.dispose()


def _policy(
    kind: SubjectKind, subject: str, *denied: ClientFeature, version: int = 1
) -> ClientPolicy:
    return ClientPolicy(kind, subject, frozenset(denied), version, 1000.5, "root")


async def test_create_replace_read_and_list(store: PolicyStore) -> None:
    assert await store.compare_and_set(
        _policy(SubjectKind.USER, "ann", ClientFeature.CHAT, ClientFeature.VIDEO), 0
    )
    assert not await store.compare_and_set(_policy(SubjectKind.USER, "ann"), 0)  # exists
    assert await store.compare_and_set(_policy(SubjectKind.GROUP, "ann"), 0)  # another kind
    assert await store.compare_and_set(
        _policy(SubjectKind.USER, "ann", ClientFeature.CALLS, version=2), 1
    )
    assert not await store.compare_and_set(_policy(SubjectKind.USER, "ann", version=2), 1)
    (found,) = await store.get_many([(SubjectKind.USER, "ann"), (SubjectKind.USER, "ben")])
    assert (found.denied, found.version, found.updated_by) == ({ClientFeature.CALLS}, 2, "root")
    assert found.update_time == 1000.5
    listed = await store.list_all()
    assert sorted((p.kind, p.subject_id, p.version) for p in listed) == [
        (SubjectKind.USER, "ann", 2),
        (SubjectKind.GROUP, "ann", 1),
    ]
    assert await store.get_many([]) == []


async def test_concurrent_writers_of_one_version_have_one_winner(store: PolicyStore) -> None:
    results = await asyncio.gather(
        *(
            store.compare_and_set(_policy(SubjectKind.GROUP, "sales", feature), 0)
            for feature in (ClientFeature.CHAT, ClientFeature.CALLS, ClientFeature.VIDEO)
        )
    )
    assert sorted(results) == [False, False, True]


async def test_the_migration_builds_the_declared_table(tmp_path: Path) -> None:
    await check_migration(
        f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}",
        client_policies.name,
        "configuration database",
    )
