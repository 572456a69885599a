"""Shared fixtures: throwaway Redis, PostgreSQL, OpenLDAP and SQLite for tests.

Backends missing on the machine make their tests skip, or fail when ``PROCALL_REQUIRE``
names them (``all`` or e.g. ``redis,postgres``); see ``tests/helpers/require.py``.
Tests using a PostgreSQL or LDAP fixture get the ``postgres`` / ``ldap`` marker automatically,
so ``-m "not postgres and not ldap"`` deselects them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # make ``procall`` and ``tests.helpers`` importable uninstalled
    sys.path.insert(0, str(ROOT))

from procall.launch.redis import RedisProcess, find_redis_server  # noqa: E402
from procall.servers.runtime.app import ServerApp  # noqa: E402
from procall.servers.runtime.roles import ROLES  # noqa: E402
from procall.settings import Settings  # noqa: E402
from tests.helpers.postgres import PostgresCluster, postgres_unavailable_reason  # noqa: E402
from tests.helpers.require import ENV_VAR, require_backend, required_backends  # noqa: E402
from tests.helpers.slapd import (  # noqa: E402
    AdDirectory,
    SlapdServer,
    reset_directory,
    seed_ad_like,
    slapd_unavailable_reason,
)
from tests.helpers.topology import SERVICE_CREDENTIAL, token_key_files  # noqa: E402

# Fixtures whose use puts a marker on the test (the fixture closure is transitive).
_MARKER_FIXTURES = {"postgres": "postgres_available", "ldap": "slapd_available"}


def pytest_configure(config: pytest.Config) -> None:
    try:
        required_backends(os.environ.get(ENV_VAR))
    except ValueError as exc:  # a typo must not silently turn "required" into "skipped"
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for marker, fixture in _MARKER_FIXTURES.items():
            if fixture in fixtures:
                item.add_marker(marker)


# -- availability (skip, or fail under PROCALL_REQUIRE) ----------------------------------------


@pytest.fixture(scope="session")
def redis_available() -> None:
    require_backend("redis", None if find_redis_server() else "redis-server not found")


@pytest.fixture(scope="session")
def postgres_available() -> None:
    require_backend("postgres", postgres_unavailable_reason())


@pytest.fixture(scope="session")
def slapd_available() -> None:
    require_backend("ldap", slapd_unavailable_reason())


# -- Redis --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(redis_available: None) -> Iterator[RedisProcess]:
    """One throwaway redis-server for the session (do not kill it; start your own for that)."""
    with RedisProcess() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """URL of the session Redis, flushed (all databases) before the test."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster(postgres_available: None) -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (do not crash it; start your own)."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """``postgresql+asyncpg://`` URL of a fresh, empty database, dropped after the test."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url.rsplit("/", 1)[1])


# -- OpenLDAP -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slapd_server(slapd_available: None) -> Iterator[SlapdServer]:
    """One throwaway slapd for the session with just the base entry ``dc=example,dc=com``."""
    with SlapdServer() as server:
        yield server


@pytest.fixture
def ldap_directory(slapd_server: SlapdServer) -> AdDirectory:
    """The session slapd wiped and seeded with a small AD-like tree (users, groups)."""
    reset_directory(slapd_server)
    return seed_ad_like(slapd_server)


# -- SQLite -------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """``sqlite+aiosqlite://`` URL of a database file in the test's tmp_path."""
    return f"sqlite+aiosqlite:///{tmp_path / 'procall.db'}"


# ==============================================================================================
# gRPC server fixtures go below this line (not yet written).
# ==============================================================================================


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for an in-process server on 127.0.0.1, port 0, with its data under tmp_path."""

    def make(redis_url: str | None = None) -> Settings:
        settings = Settings()
        settings.server.port = 0
        settings.server.grace_seconds = 0.5
        settings.auth.service_credential = SERVICE_CREDENTIAL
        settings.auth.signing_key_file, settings.auth.verify_key_file = token_key_files()
        settings.database.url = f"sqlite+aiosqlite:///{tmp_path / 'procall.db'}"
        settings.chat.outbox_path = str(tmp_path / "{server_id}.outbox.sqlite")
        if redis_url:
            settings.redis.url = redis_url
        return settings

    return make


@pytest.fixture
async def start_app() -> AsyncIterator[Callable[[str, Settings], Awaitable[ServerApp]]]:
    """Start role servers in-process (``await start_app("lookup", settings)``); stopped after."""
    apps: list[ServerApp] = []

    async def start(role: str, settings: Settings) -> ServerApp:
        app = await ROLES[role](settings)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in reversed(apps):
        await app.stop(0)


@pytest.fixture(autouse=True)
async def _collect_grpc_garbage() -> AsyncIterator[None]:
    """Collect each test's leftover gRPC objects while its event loop still runs.

    grpc.aio channels and calls freed by the garbage collector after their loop has
    closed can crash the interpreter (seen as a SIGSEGV in a later, unrelated test).
    """
    yield
    import gc

    gc.collect()
