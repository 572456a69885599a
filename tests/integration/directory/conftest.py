"""A Directory server (in-process, port 0) on each backend, seeded with the same people.

The ``directory`` fixture runs every test against SQLite, PostgreSQL and LDAP (slapd):
the LDAP tree comes from ``tests.helpers.slapd`` (alice, bob, carol, dave; groups sales,
support, admins); the SQL databases get the same users and groups through the gRPC API.
Argon2 runs with cheap parameters so the suite stays fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.servers.directory.root import build_directory
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from procall.storage.sql import metadata, upgrade_to_head
from tests.helpers.postgres import PostgresCluster
from tests.helpers.slapd import DEFAULT_GROUPS, DEFAULT_USERS, AdDirectory
from tests.helpers.topology import (
    SERVICE_CREDENTIAL,
    harness_channel,
    operator_channel,
    token_key_files,
)

DOMAIN = "example.com"
PASSWORDS = {user.sam: user.password for user in DEFAULT_USERS}


def directory_settings(
    database_url: str, *, ad: AdDirectory | None = None, **directory: object
) -> Settings:
    """Settings of a Directory on ``database_url`` (and on ``ad`` when given), port 0."""
    settings = Settings()
    settings.server.port = 0
    settings.server.grace_seconds = 0.2
    settings.auth.service_credential = SERVICE_CREDENTIAL
    settings.auth.verify_key_file = token_key_files()[1]
    settings.database.url = database_url
    settings.database.connect_timeout = 2.0
    settings.directory.argon2_time_cost = 1
    settings.directory.argon2_memory_kib = 64
    settings.directory.argon2_parallelism = 1
    settings.directory.max_failed_logins = 3
    settings.directory.lockout_seconds = 60.0
    for key, value in directory.items():
        setattr(settings.directory, key, value)
    if ad is not None:
        settings.directory.backend = "ldap"
        settings.ldap.url = ad.url
        settings.ldap.bind_dn = ad.admin_dn
        settings.ldap.bind_password = ad.admin_password
        settings.ldap.base_dn = ad.base_dn
        settings.ldap.users_dn = ad.users_dn
        settings.ldap.groups_dn = ad.groups_dn
        settings.ldap.admin_group = "admins"
        settings.ldap.connect_timeout = 1.0
        settings.ldap.receive_timeout = 2.0
    return settings


@dataclass
class Harness:
    """A running Directory with a stub and the seeded users and groups by name."""

    backend: str
    app: ServerApp
    channel: grpc.aio.Channel
    stub: directory_grpc.DirectoryServiceAsyncStub
    #: The same Directory as a UCServer sees it (Authenticate is for UCServers only).
    login: directory_grpc.DirectoryServiceAsyncStub
    ad: AdDirectory | None = None
    users: dict[str, pb.User] = field(default_factory=dict)
    groups: dict[str, pb.Group] = field(default_factory=dict)

    @property
    def writable(self) -> bool:
        """Whether users can be changed (SQL)."""
        return self.backend != "ldap"

    def id_of(self, username: str) -> str:
        """The user id of a seeded user."""
        return self.users[username].user_id


async def seed_like_ad(stub: directory_grpc.DirectoryServiceAsyncStub) -> None:
    """Create the users and groups of the LDAP test tree through the API."""
    groups: dict[str, str] = {}
    for group in DEFAULT_GROUPS:
        reply = await stub.CreateGroup(
            svc.CreateGroupRequest(group=pb.Group(name=group.name, description=group.description))
        )
        groups[group.name] = reply.group.group_id
    for user in DEFAULT_USERS:
        member_of = [groups[g.name] for g in DEFAULT_GROUPS if user.sam in g.members]
        await stub.CreateUser(
            svc.CreateUserRequest(
                user=pb.User(
                    username=user.sam,
                    display_name=user.display_name,
                    mail=f"{user.sam}@{DOMAIN}",
                    principal_name=f"{user.sam}@{DOMAIN}",
                    phone_number=user.telephone,
                    group_ids=member_of,
                    admin=user.sam == "alice",
                ),
                password=user.password,
            )
        )


async def start_directory(
    settings: Settings, role: str = "operator"
) -> tuple[ServerApp, grpc.aio.Channel]:
    """Build, start and connect to a Directory (as the operator, a service ``role``, or
    ``"harness"``: the UCServer for Authenticate, the operator for everything else)."""
    app = await build_directory(settings)
    await app.start()
    if role == "harness":
        return app, harness_channel(app.address)
    return app, operator_channel(app.address, role)


async def _harness(
    backend: str, settings: Settings, ad: AdDirectory | None
) -> AsyncIterator[Harness]:
    app, channel = await start_directory(settings)
    stub: directory_grpc.DirectoryServiceAsyncStub = directory_grpc.DirectoryServiceStub(channel)
    as_ucserver = operator_channel(app.address, "ucserver")
    login = directory_grpc.DirectoryServiceStub(as_ucserver)
    harness = Harness(backend, app, channel, stub, login, ad)
    try:
        if ad is None:
            await seed_like_ad(stub)
        listed = await stub.ListUsers(svc.ListUsersRequest(page_size=100))
        harness.users = {u.username: u for u in listed.users}
        groups = await stub.ListGroups(svc.ListGroupsRequest(page_size=100))
        harness.groups = {g.name: g for g in groups.groups}
        yield harness
    finally:
        await channel.close()
        await as_ucserver.close()
        await app.stop(0)


BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("ldap", marks=pytest.mark.ldap),
]
SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def directory_pg_database(postgres_cluster: PostgresCluster) -> str:
    """One migrated PostgreSQL database for the Directory tests of this session.

    ``CREATE DATABASE`` costs ~0.3 s and a fresh migration ~0.1 s; emptying the tables
    costs ~40 ms, so the tests share one database that ``directory_pg_url`` empties.
    """
    url = postgres_cluster.create_database("directory_tests")
    # requested from inside a running event loop: migrate on a thread with its own loop
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, upgrade_to_head(url)).result()
    return url


@pytest.fixture
def directory_pg_url(postgres_cluster: PostgresCluster, directory_pg_database: str) -> str:
    """The shared Directory test database, emptied."""
    import psycopg

    tables = ", ".join(t.name for t in reversed(metadata.sorted_tables))
    with psycopg.connect(postgres_cluster.dsn("directory_tests"), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} CASCADE".encode())
    return directory_pg_database


def _backend_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[Settings, AdDirectory | None]:
    backend: str = request.param
    if backend == "sqlite":
        return directory_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"), None
    if backend == "postgres":
        return directory_settings(request.getfixturevalue("directory_pg_url")), None
    ad: AdDirectory = request.getfixturevalue("ldap_directory")
    side = f"sqlite+aiosqlite:///{tmp_path / 'side.db'}"
    return directory_settings(side, ad=ad), ad


@pytest.fixture(params=BACKENDS)
async def directory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A seeded Directory on SQLite, PostgreSQL and LDAP in turn."""
    settings, ad = _backend_settings(request, tmp_path)
    async for harness in _harness(request.param, settings, ad):
        yield harness


@pytest.fixture(params=SQL_BACKENDS)
async def sql_directory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A seeded Directory on SQLite and PostgreSQL in turn."""
    settings, ad = _backend_settings(request, tmp_path)
    async for harness in _harness(request.param, settings, ad):
        yield harness


@pytest.fixture
def ldap_harness_factory(
    ldap_directory: AdDirectory, tmp_path: Path
) -> Callable[..., AsyncIterator[Harness]]:
    """Start an LDAP Directory with extra ``[ldap]`` settings: ``async for h in make(**ldap)``."""

    def make(**ldap: object) -> AsyncIterator[Harness]:
        settings = directory_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'side.db'}", ad=ldap_directory
        )
        for key, value in ldap.items():
            setattr(settings.ldap, key, value)
        return _harness("ldap", settings, ldap_directory)

    return make


# -- reading rich errors ------------------------------------------------------------------------


def status_details(error: grpc.aio.AioRpcError) -> list[object]:
    """The unpacked ``google.rpc.Status`` details of a failed call."""
    found: list[object] = []
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)  # type: ignore[arg-type]
        for detail in status.details:
            for kind in (
                error_details_pb2.ErrorInfo,
                error_details_pb2.BadRequest,
                error_details_pb2.RetryInfo,
            ):
                message = kind()
                if detail.Unpack(message):
                    found.append(message)
    return found


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ``ErrorInfo`` of a failed call."""
    for detail in status_details(error):
        if isinstance(detail, error_details_pb2.ErrorInfo):
            return detail
    raise AssertionError("no ErrorInfo")


def bad_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by the ``BadRequest`` of a failed call."""
    return [
        violation.field
        for detail in status_details(error)
        if isinstance(detail, error_details_pb2.BadRequest)
        for violation in detail.field_violations
    ]


def retry_seconds(error: grpc.aio.AioRpcError) -> float | None:
    """The ``RetryInfo`` delay of a failed call."""
    for detail in status_details(error):
        if isinstance(detail, error_details_pb2.RetryInfo):
            return detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9
    return None
