"""The configuration store's behaviour suite, on the in-memory fake, SQLite and PostgreSQL.

The fake the configuration unit tests use (``tests/unit/config/fakes.py``) must pass the very
suite ``SqlConfigStore`` passes. Below the suite: the migration builds the table
``procall/storage/sql/config.py`` declares, on every dialect; and the cache file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from procall.config import ConfigStore, PropertyKey, PropertyValue, Scope
from procall.errors import Aborted, Unavailable
from procall.launch.redis import free_port
from procall.storage.config_cache import CacheFileError, ConfigCacheFile
from procall.storage.sql import SqlDatabase
from procall.storage.sql.config import SqlConfigStore, config_properties
from procall.storage.sql.migrate import migration_sql
from tests.helpers.sql_stores import SQL_BACKENDS, MigratedDatabases, check_migration
from tests.unit.config.fakes import MemoryConfigStore

_PG_DATABASE = "config_tests"

RING = PropertyKey(Scope.GLOBAL, "", "calls.ring_seconds")
CAP_1 = PropertyKey(Scope.LOCAL, "uc-1", "server.capacity")
CAP_2 = PropertyKey(Scope.LOCAL, "uc-2", "server.capacity")


DATABASES = MigratedDatabases(_PG_DATABASE, config_properties.name)


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConfigStore]:
    """The configuration store on the fake, on SQLite and on PostgreSQL in turn."""
    if request.param == "memory":
        yield MemoryConfigStore()
        return
    url = DATABASES.url(request.param, request, tmp_path)
    database = SqlDatabase(url, name="configuration database", connect_timeout=2.0)
    try:
        yield SqlConfigStore(database)
    finally:
        await database.dispose()


async def _set(
    store: ConfigStore,
    key: PropertyKey,
    value: str,
    expected: int,
    *,
    by: str = "admin",
    at: float = 1000.25,
    fencing: int | None = None,
) -> PropertyValue:
    return await store.compare_and_set(
        key, value, expected_version=expected, updated_by=by, update_time=at, fencing=fencing
    )


# -- the behaviour suite ------------------------------------------------------------------------


async def test_nothing_stored_at_first(store: ConfigStore) -> None:
    assert await store.get(RING) is None
    assert await store.values(Scope.GLOBAL, "") == []


async def test_create_then_update_with_every_field(store: ConfigStore) -> None:
    first = await _set(store, RING, "20.0", 0, by="admin-ä", at=1700000000.123456)
    assert first == PropertyValue(RING, "20.0", 1, 1700000000.123456, "admin-ä", 0)
    assert await store.get(RING) == first
    second = await _set(store, RING, "ünïcødé ✓", 1, by="b", at=1700000001.5)
    assert second == PropertyValue(RING, "ünïcødé ✓", 2, 1700000001.5, "b", 0)
    assert await store.get(RING) == second


async def test_a_stale_version_is_aborted_and_changes_nothing(store: ConfigStore) -> None:
    await _set(store, RING, "20.0", 0)
    for stale in (0, 2, 5):
        with pytest.raises(Aborted) as exc:
            await _set(store, RING, "99.0", stale, by="late")
        assert exc.value.reason == "STALE_VERSION"
        assert exc.value.metadata["current_version"] == "1"
    with pytest.raises(Aborted):
        await _set(store, CAP_1, "1", 3)  # a version of a row that does not exist
    stored = await store.get(RING)
    assert stored is not None and (stored.value, stored.version) == ("20.0", 1)
    assert await store.get(CAP_1) is None


async def test_concurrent_writers_of_one_version_exactly_one_wins(store: ConfigStore) -> None:
    for expected in (0, 1):
        results = await asyncio.gather(
            *(_set(store, RING, f"{n}.0", expected, by=f"admin-{n}") for n in range(6)),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, PropertyValue)]
        assert len(wins) == 1, results
        assert sum(isinstance(r, Aborted) for r in results) == 5
        assert await store.get(RING) == wins[0]
        assert wins[0].version == expected + 1


async def test_scopes_and_servers_are_apart(store: ConfigStore) -> None:
    await _set(store, CAP_1, "10", 0)
    await _set(store, CAP_2, "20", 0)
    await _set(store, RING, "5.0", 0)
    await _set(store, PropertyKey(Scope.GLOBAL, "", "calls.a"), "x", 0)
    assert [v.value for v in await store.values(Scope.LOCAL, "uc-1")] == ["10"]
    assert [v.value for v in await store.values(Scope.LOCAL, "uc-2")] == ["20"]
    assert [v.key.name for v in await store.values(Scope.GLOBAL, "")] == [
        "calls.a",
        "calls.ring_seconds",
    ]


async def test_the_highest_fencing_number_is_kept_and_lower_ones_refused(
    store: ConfigStore,
) -> None:
    assert (await _set(store, RING, "1.0", 0, fencing=5)).fencing == 5
    assert (await _set(store, RING, "2.0", 1, fencing=7)).fencing == 7
    # a holder whose lease (fencing 6) was taken over since cannot write, even on the
    # right version
    with pytest.raises(Aborted) as exc:
        await _set(store, RING, "bad", 2, fencing=6)
    assert exc.value.metadata["fencing"] == "7"
    # a write without a lease (nobody holds one now) keeps the highest number
    assert (await _set(store, RING, "3.0", 2)).fencing == 7
    assert (await _set(store, RING, "4.0", 3, fencing=7)).version == 4
    stored = await store.get(RING)
    assert stored is not None and (stored.value, stored.fencing) == ("4.0", 7)


async def test_a_database_that_does_not_answer_is_unavailable() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/config"
    database = SqlDatabase(url, name="configuration database", connect_timeout=1.0)
    try:
        store = SqlConfigStore(database)
        with pytest.raises(Unavailable) as exc:
            await _set(store, RING, "20.0", 0)
        assert "configuration database" in exc.value.message
        with pytest.raises(Unavailable):
            await store.get(RING)
        with pytest.raises(Unavailable):
            await store.values(Scope.GLOBAL, "")
    finally:
        await database.dispose()


# -- the schema ---------------------------------------------------------------------------------


async def _check_upgrade(url: str) -> None:
    # the migration builds exactly the table the store module declares
    await check_migration(url, config_properties.name, "configuration database")


async def test_upgrade_empty_sqlite_to_head(tmp_path: Path) -> None:
    await _check_upgrade(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.postgres
async def test_upgrade_empty_postgres_to_head(postgres_url: str) -> None:
    await _check_upgrade(postgres_url)


def test_migration_renders_sql_server_ddl() -> None:
    ddl = migration_sql("mssql+pyodbc://")
    assert "CREATE TABLE config_properties (" in ddl
    assert "value NVARCHAR(max) NOT NULL" in ddl
    assert "version BIGINT NOT NULL" in ddl
    assert "CONSTRAINT pk_config_properties PRIMARY KEY (scope, server_id, name)" in ddl


async def test_the_sql_store_is_the_port(tmp_path: Path) -> None:
    database = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", name="x")
    try:
        sql: ConfigStore = SqlConfigStore(database)
        memory: ConfigStore = MemoryConfigStore()
        assert sql and memory
    finally:
        await database.dispose()


# -- the cache file -----------------------------------------------------------------------------


def test_the_cache_file_round_trips(tmp_path: Path) -> None:
    cache = ConfigCacheFile(tmp_path / "sub" / "uc-1.config-cache.json", "uc-1")
    values = [PropertyValue(RING, "20.0", 3, 1.5, "ä", 2), PropertyValue(CAP_1, "7", 1, 2.0, "b")]
    cache.write(values)
    assert cache.read() == values
    cache.write([])
    assert cache.read() == []
    assert [p.name for p in cache.path.parent.iterdir()] == ["uc-1.config-cache.json"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace('"20.0"', '"99.0"'),  # edited by hand: checksum fails
        lambda text: text[: len(text) // 2],  # cut short: not JSON
        lambda text: "",
        lambda text: json.dumps({**json.loads(text), "server_id": "uc-2"}),
        lambda text: json.dumps({**json.loads(text), "values": "x"}),
    ],
)
def test_a_corrupt_cache_file_is_refused(tmp_path: Path, damage: Any) -> None:
    cache = ConfigCacheFile(tmp_path / "c.json", "uc-1")
    cache.write([PropertyValue(RING, "20.0", 3, 1.5, "a", 0)])
    cache.path.write_text(damage(cache.path.read_text()))
    with pytest.raises(CacheFileError):
        cache.read()


def test_a_missing_cache_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CacheFileError):
        ConfigCacheFile(tmp_path / "none.json", "uc-1").read()
