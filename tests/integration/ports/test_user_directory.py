"""One behaviour suite for what the Directory's use-cases read from a backend (``UserReader``
lookups, ``Authenticator``, ``HomeServerStore``), run against ``MemoryUsers`` of the
Directory unit tests and against the SQL backend (``SqlUserStore`` with
``PasswordAuthenticator``) on migrated SQLite and PostgreSQL databases, so that the fake
cannot drift."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from procall.directory import (
    HashParameters,
    HomeServerAssignment,
    NewUser,
    PasswordAuthenticator,
    PasswordHasher,
    User,
)
from procall.directory.ports import Authenticator, HomeServerStore, UserReader
from procall.storage.sql.directory_users import SqlUserStore
from tests.integration.ports.conftest import SQL_BACKENDS, sql_database
from tests.unit.directory.fakes import MemoryUsers

PEOPLE = {
    "alice": NewUser("alice", "Alice Anderson", principal_name="alice@example.com"),
    "bob": NewUser("bob", "Bob Brown", home_server_id="uc-1"),
}
PASSWORDS = {"alice": "alice-pass", "bob": "bob-pass"}


@dataclass
class Backend:
    """One backend seen through the three ports, and the users it was seeded with."""

    reader: UserReader
    authenticator: Authenticator
    home_servers: HomeServerStore
    users: dict[str, User]


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        users = {
            name: User(f"u-{name}", **{k: getattr(new, k) for k in NewUser.__dataclass_fields__})
            for name, new in PEOPLE.items()
        }
        memory = MemoryUsers(list(users.values()), {users[n].user_id: PASSWORDS[n] for n in users})
        yield Backend(memory, memory, memory, users)
        return
    database = await sql_database(request.param, request, tmp_path)
    hasher = PasswordHasher(HashParameters(1, 64, 1))
    store = SqlUserStore(database)
    try:
        created = {
            name: await store.create_user(new, await hasher.hash(PASSWORDS[name]))
            for name, new in PEOPLE.items()
        }
        yield Backend(store, PasswordAuthenticator(store, hasher), store, created)
    finally:
        await database.dispose()


def _same_person(found: User | None, expected: User) -> None:
    assert found is not None
    # the backend's own bookkeeping (times) aside, a user reads back as it was stored
    assert replace(found, create_time=None, update_time=None) == replace(
        expected, create_time=None, update_time=None
    )


async def test_users_are_found_by_id_and_case_insensitive_username(backend: Backend) -> None:
    alice, bob = backend.users["alice"], backend.users["bob"]
    _same_person(await backend.reader.get_user(alice.user_id), alice)
    _same_person(await backend.reader.get_user_by_username("ALICE"), alice)
    assert await backend.reader.get_user("nobody") is None
    assert await backend.reader.get_user_by_username("nobody") is None
    found = await backend.reader.get_users([bob.user_id, "nobody", alice.user_id, bob.user_id])
    assert set(found) == {alice.user_id, bob.user_id}
    _same_person(found[bob.user_id], bob)


async def test_an_account_is_found_by_username_or_principal_name(backend: Backend) -> None:
    alice = backend.users["alice"]
    for login in ("alice", "Alice", "alice@example.com", "ALICE@example.com"):
        account = await backend.authenticator.find_account(login)
        assert account is not None and account.user.user_id == alice.user_id, login
    assert await backend.authenticator.find_account("nobody") is None


async def test_only_the_right_password_is_accepted(backend: Backend) -> None:
    auth = backend.authenticator
    alice = await auth.find_account("alice")
    assert await auth.check_password(alice, "alice-pass")
    assert not await auth.check_password(alice, "bob-pass")
    assert not await auth.check_password(alice, "")
    assert not await auth.check_password(None, "alice-pass")


async def test_home_servers_are_assigned_and_cleared(backend: Backend) -> None:
    alice, bob = backend.users["alice"], backend.users["bob"]
    await backend.home_servers.set_home_servers(
        [
            HomeServerAssignment(alice.user_id, "uc-2"),
            HomeServerAssignment(bob.user_id, ""),
            HomeServerAssignment("nobody", "uc-2"),  # unknown users are left out
        ]
    )
    assert (await backend.reader.get_user(alice.user_id) or alice).home_server_id == "uc-2"
    assert (await backend.reader.get_user(bob.user_id) or alice).home_server_id == ""
    assert await backend.reader.get_user("nobody") is None
