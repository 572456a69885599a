"""The client policy store, one behaviour suite over the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from procall.policies import ClientFeature, ClientPolicy, PolicyStore, SubjectKind
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.migrate import upgrade_to_head
from procall.storage.sql.policies import SqlPolicyStore, client_policies
from tests.helpers.postgres import PostgresCluster
from tests.unit.policies.fakes import MemoryPolicyStore

_PG_DATABASE = "policy_tests"


def _migrate(url: str) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, upgrade_to_head(url)).result()


@pytest.fixture(scope="session")
def policy_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policies") / "template.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def policy_pg_database(postgres_cluster: PostgresCluster) -> str:
    url = postgres_cluster.create_database(_PG_DATABASE)
    _migrate(url)
    return url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PolicyStore]:
    if request.param == "memory":
        yield MemoryPolicyStore()
        return
    if request.param == "sqlite":
        path = tmp_path / "policies.db"
        shutil.copyfile(request.getfixturevalue("policy_sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        import psycopg

        url = request.getfixturevalue("policy_pg_database")
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        with psycopg.connect(cluster.dsn(_PG_DATABASE), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {client_policies.name}".encode())
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
