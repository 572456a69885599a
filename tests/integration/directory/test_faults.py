"""Backends failing under a running Directory: UNAVAILABLE in bounded time, then recovery.

Each test owns its PostgreSQL cluster or slapd, so crashing it harms no other test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.launch.redis import free_port
from procall.servers.directory.root import build_directory
from procall.servers.runtime.app import StartupError
from tests.helpers.postgres import PostgresCluster
from tests.helpers.slapd import SlapdServer, seed_ad_like
from tests.integration.directory.conftest import (
    PASSWORDS,
    directory_settings,
    error_info,
    seed_like_ad,
    start_directory,
)

if TYPE_CHECKING:
    Stub = directory_grpc.DirectoryServiceAsyncStub


async def _unavailable_within(
    call: Callable[[], Awaitable[object]], backend: str, bound: float
) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call()
    elapsed = time.monotonic() - started
    error = failure.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert backend in (error.details() or "")
    info = error_info(error)
    assert info.reason == "BACKEND_UNAVAILABLE" and info.metadata["backend"] == backend
    assert elapsed < bound, f"took {elapsed:.1f} s"


def _calls(stub: Stub) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: stub.Authenticate(
            svc.AuthenticateRequest(username="alice", password=PASSWORDS["alice"]), timeout=30
        ),
        lambda: stub.ListUsers(svc.ListUsersRequest(), timeout=30),
        lambda: stub.SearchUsers(svc.SearchUsersRequest(query="bob"), timeout=30),
        lambda: stub.GetUser(svc.GetUserRequest(username="carol"), timeout=30),
    ]


async def _logs_in(stub: Stub) -> None:
    reply = await stub.Authenticate(
        svc.AuthenticateRequest(username="alice", password=PASSWORDS["alice"]), timeout=30
    )
    assert reply.user.username == "alice"


def _process_tree(root: int) -> list[int]:
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                pids.append(int(entry.name))
    return pids


@contextmanager
def _frozen(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def test_postgres_crash_and_freeze_then_recovery(postgres_available: None) -> None:
    with PostgresCluster() as cluster:
        settings = directory_settings(cluster.create_database("users"))
        settings.database.connect_timeout = 1.0
        settings.directory.query_timeout = 2.0
        app, channel = await start_directory(settings, role="harness")
        stub: Stub = directory_grpc.DirectoryServiceStub(channel)
        try:
            await seed_like_ad(stub)
            await _logs_in(stub)

            await asyncio.to_thread(cluster.stop, "immediate")
            for call in _calls(stub):
                await _unavailable_within(call, "user database", bound=3.0)
            await _unavailable_within(
                lambda: stub.CreateUser(
                    svc.CreateUserRequest(user=pb.User(username="erin", display_name="Erin"))
                ),
                "user database",
                bound=3.0,
            )

            await asyncio.to_thread(cluster.start)
            await _logs_in(stub)  # the same Directory process, no restart

            postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
            with _frozen(_process_tree(postmaster)):
                await _unavailable_within(_calls(stub)[1], "user database", bound=4.0)
            await _logs_in(stub)
            listed = await stub.ListUsers(svc.ListUsersRequest(), timeout=30)
            assert len(listed.users) == 4
        finally:
            await channel.close()
            await app.stop(0)


async def test_ldap_killed_and_frozen_then_recovery(slapd_available: None, tmp_path: Path) -> None:
    with SlapdServer() as server:
        ad = seed_ad_like(server)
        settings = directory_settings(f"sqlite+aiosqlite:///{tmp_path / 'side.db'}", ad=ad)
        settings.ldap.connect_timeout = 1.0
        settings.ldap.receive_timeout = 1.0
        app, channel = await start_directory(settings, role="harness")
        stub: Stub = directory_grpc.DirectoryServiceStub(channel)
        try:
            await _logs_in(stub)
            listed = await stub.ListUsers(svc.ListUsersRequest(), timeout=30)
            ids = {u.username: u.user_id for u in listed.users}

            await asyncio.to_thread(server.kill)
            for call in _calls(stub):
                await _unavailable_within(call, "LDAP directory", bound=3.0)
            # delegations live in SQL: answering them does not need the LDAP server
            check = await stub.CheckDelegation(
                svc.CheckDelegationRequest(
                    actor_user_id=ids["bob"],
                    principal_user_id=ids["alice"],
                    scope=pb.DELEGATION_SCOPE_PRESENCE_SET,
                ),
                timeout=30,
            )
            assert check.allowed is False

            await asyncio.to_thread(server.start)
            await _logs_in(stub)  # pooled connections died with slapd: replaced quietly
            found = await stub.SearchUsers(svc.SearchUsersRequest(query="bob"), timeout=30)
            assert [u.username for u in found.users] == ["bob"]

            assert server.pid is not None
            with _frozen([server.pid]):
                await _unavailable_within(_calls(stub)[0], "LDAP directory", bound=6.0)
                await _unavailable_within(_calls(stub)[2], "LDAP directory", bound=6.0)
            await _logs_in(stub)
        finally:
            await channel.close()
            await app.stop(0)


async def test_start_fails_with_one_line_when_the_database_does_not_answer() -> None:
    settings = directory_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/users")
    settings.database.connect_timeout = 1.0
    started = time.monotonic()
    with pytest.raises(StartupError) as failure:
        await build_directory(settings)
    assert time.monotonic() - started < 5
    message = str(failure.value)
    assert "user database" in message and "does not answer" in message
    assert "\n" not in message


async def test_start_refuses_bad_settings(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    cases: list[tuple[dict[str, object], str]] = [
        ({"backend": "nis"}, "backend"),
        ({"argon2_memory_kib": 4}, "argon2_memory_kib"),
    ]
    for directory, expected in cases:
        with pytest.raises(StartupError) as failure:
            await build_directory(directory_settings(url, **directory))
        assert expected in str(failure.value)
    ldap = directory_settings(url, backend="ldap")
    ldap.ldap.base_dn = ""
    with pytest.raises(StartupError) as failure:
        await build_directory(ldap)
    assert "base_dn" in str(failure.value)
    bad_url = directory_settings("nonsense://")
    with pytest.raises(StartupError):
        await build_directory(bad_url)
