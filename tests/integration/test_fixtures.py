"""The shared backend fixtures really store and return data; fault helpers work."""

from __future__ import annotations

import os
import signal

import ldap3
import pytest
import redis
import redis.asyncio
from ldap3.utils.conv import escape_filter_chars
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from procall.launch.redis import RedisProcess
from tests.helpers.postgres import PostgresCluster
from tests.helpers.require import decide, required_backends
from tests.helpers.slapd import AdDirectory

# -- Redis --------------------------------------------------------------------------------------


async def test_redis_set_get(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0
        await client.set("procall:test", "hello")
        assert await client.get("procall:test") == b"hello"
    finally:
        await client.aclose()


def test_redis_kill_then_restart_is_empty(redis_available: None) -> None:
    with RedisProcess() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        client.set("k", "v")
        old_pid = server.pid
        assert old_pid is not None
        server.kill()
        assert not server.running
        with pytest.raises(ProcessLookupError):
            os.kill(old_pid, 0)
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        port = server.port
        server.restart()
        assert server.port == port and server.pid not in (None, old_pid)
        assert client.get("k") is None  # "Redis restarted empty"
        client.set("k", "v2")
        assert client.get("k") == b"v2"
        client.close()
        pid = server.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, signal.SIG_DFL)


# -- SQL ----------------------------------------------------------------------------------------


async def _roundtrip(url: str) -> list[tuple[int, str]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE calls (id INTEGER PRIMARY KEY, caller TEXT)"))
            await conn.execute(
                text("INSERT INTO calls (id, caller) VALUES (:id, :caller)"),
                [{"id": 1, "caller": "alice"}, {"id": 2, "caller": "bob"}],
            )
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT id, caller FROM calls ORDER BY id"))
            return [(row.id, row.caller) for row in result]
    finally:
        await engine.dispose()


async def test_postgres_roundtrip(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    assert await _roundtrip(postgres_url) == [(1, "alice"), (2, "bob")]


async def test_postgres_database_is_fresh_per_test(postgres_url: str) -> None:
    # Same table name as the test above: fails if databases were shared between tests.
    assert await _roundtrip(postgres_url) == [(1, "alice"), (2, "bob")]


async def test_sqlite_roundtrip(sqlite_url: str) -> None:
    assert await _roundtrip(sqlite_url) == [(1, "alice"), (2, "bob")]


@pytest.mark.postgres
async def test_postgres_crash_then_start(postgres_available: None) -> None:
    with PostgresCluster() as cluster:
        url = cluster.create_database("crashme")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (v INTEGER)"))
                await conn.execute(text("INSERT INTO t VALUES (42)"))
        finally:
            await engine.dispose()
        cluster.stop("immediate")
        cluster.start()
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT v FROM t"))).scalar_one() == 42
        finally:
            await engine.dispose()


# -- LDAP ---------------------------------------------------------------------------------------


def _bind(directory: AdDirectory, dn: str, password: str) -> bool:
    server = ldap3.Server(directory.url, get_info=ldap3.NONE, connect_timeout=5)
    conn = ldap3.Connection(server, user=dn, password=password)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


def test_ldap_user_bind(ldap_directory: AdDirectory) -> None:
    alice = ldap_directory.users["alice"]
    dn = ldap_directory.user_dn("alice")
    assert _bind(ldap_directory, dn, alice.password)
    assert not _bind(ldap_directory, dn, alice.password + "x")


def test_ldap_search_by_sam_and_member_of(ldap_directory: AdDirectory) -> None:
    server = ldap3.Server(ldap_directory.url, get_info=ldap3.NONE)
    with ldap3.Connection(
        server, ldap_directory.admin_dn, ldap_directory.admin_password, auto_bind=True
    ) as conn:
        sam = escape_filter_chars("alice")
        conn.search(
            ldap_directory.base_dn,
            f"(&(objectClass=user)(sAMAccountName={sam}))",
            attributes=["sAMAccountName", "userPrincipalName", "displayName", "mail",
                        "telephoneNumber", "memberOf"],
        )  # fmt: skip
        assert len(conn.entries) == 1
        entry = conn.entries[0]
        assert entry.entry_dn == ldap_directory.user_dn("alice")
        assert entry.userPrincipalName.value == "alice@example.com"
        assert entry.displayName.value == "Alice Anderson"
        assert entry.mail.value == "alice@example.com"
        assert entry.telephoneNumber.value == "+1 555 0101"
        assert set(entry.memberOf.values) == {
            ldap_directory.group_dn("sales"),
            ldap_directory.group_dn("admins"),
        }
        conn.search(
            ldap_directory.base_dn,
            f"(&(objectClass=user)(memberOf={ldap_directory.group_dn('sales')}))",
            attributes=["sAMAccountName"],
        )
        assert sorted(e.sAMAccountName.value for e in conn.entries) == ["alice", "bob"]


def test_ldap_directory_changes_1_delete_user(ldap_directory: AdDirectory) -> None:
    server = ldap3.Server(ldap_directory.url, get_info=ldap3.NONE)
    with ldap3.Connection(
        server, ldap_directory.admin_dn, ldap_directory.admin_password, auto_bind=True
    ) as conn:
        assert conn.delete(ldap_directory.user_dn("carol"))
        conn.search(ldap_directory.base_dn, "(objectClass=user)", attributes=["sAMAccountName"])
        assert len(conn.entries) == len(ldap_directory.users) - 1


def test_ldap_directory_changes_2_do_not_leak(ldap_directory: AdDirectory) -> None:
    server = ldap3.Server(ldap_directory.url, get_info=ldap3.NONE)
    with ldap3.Connection(
        server, ldap_directory.admin_dn, ldap_directory.admin_password, auto_bind=True
    ) as conn:
        conn.search(ldap_directory.base_dn, "(objectClass=user)", attributes=["sAMAccountName"])
        assert len(conn.entries) == len(ldap_directory.users)
        conn.search(ldap_directory.base_dn, "(objectClass=group)", attributes=["member"])
        assert len(conn.entries) == len(ldap_directory.groups)


def test_ldap_password_is_not_readable(ldap_directory: AdDirectory) -> None:
    server = ldap3.Server(ldap_directory.url, get_info=ldap3.NONE)
    bob = ldap_directory.users["bob"]
    with ldap3.Connection(
        server, ldap_directory.user_dn("bob"), bob.password, auto_bind=True
    ) as conn:
        conn.search(ldap_directory.users_dn, "(sAMAccountName=alice)", attributes=["*"])
        assert len(conn.entries) == 1
        assert "userPassword" not in conn.entries[0].entry_attributes


def test_ldap_marker_applied(request: pytest.FixtureRequest, ldap_directory: AdDirectory) -> None:
    assert request.node.get_closest_marker("ldap") is not None
    assert request.node.get_closest_marker("postgres") is None


def test_postgres_marker_applied(request: pytest.FixtureRequest, postgres_url: str) -> None:
    assert request.node.get_closest_marker("postgres") is not None


# -- PROCALL_REQUIRE ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "reason", "require", "expected"),
    [
        ("redis", None, None, "run"),
        ("redis", None, "all", "run"),
        ("redis", "missing", None, "skip"),
        ("redis", "missing", "", "skip"),
        ("redis", "missing", "all", "fail"),
        ("postgres", "missing", "redis,ldap", "skip"),
        ("postgres", "missing", " Redis , POSTGRES ", "fail"),
        ("ldap", "missing", "ldap", "fail"),
    ],
)
def test_require_decision(backend: str, reason: str | None, require: str | None,
                          expected: str) -> None:  # fmt: skip
    assert decide(backend, reason, require) == expected


def test_require_rejects_unknown_names() -> None:
    assert required_backends("all") == {"redis", "postgres", "ldap"}
    with pytest.raises(ValueError, match="mysql"):
        required_backends("redis,mysql")
    with pytest.raises(ValueError):
        decide("mysql", None, None)
