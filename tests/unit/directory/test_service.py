"""The Directory's use-cases over in-memory ports."""

from __future__ import annotations

import pytest

from procall.directory import (
    BackendInfo,
    BackendKind,
    Delegations,
    DelegationScope,
    Directory,
    HashParameters,
    HomeServerAssignment,
    LoginThrottle,
    NewGroup,
    NewPickupGroup,
    NewUser,
    PasswordHasher,
    SearchField,
    User,
)
from procall.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from tests.unit.directory.fakes import MemoryDelegations, MemoryUsers

USERS = [
    User("u-alice", "alice", "Alice Anderson"),
    User("u-bob", "bob", "Bob Brown"),
    User("u-carol", "carol", "Carol Clark", disabled=True),
]
PASSWORDS = {"u-alice": "alice-pass", "u-bob": "bob-pass", "u-carol": "carol-pass"}


def _read_only_directory(store: MemoryUsers, max_failures: int = 3) -> Directory:
    return Directory(
        info=BackendInfo(BackendKind.LDAP, False, "test"),
        reader=store,
        authenticator=store,
        home_servers=store,
        writer=None,
        hasher=PasswordHasher(HashParameters(1, 64, 1)),
        throttle=LoginThrottle(max_failures, 60.0),
    )


@pytest.fixture
def store() -> MemoryUsers:
    return MemoryUsers(USERS, PASSWORDS)


async def test_login_answers_are_indistinguishable(store: MemoryUsers) -> None:
    directory = _read_only_directory(store, max_failures=100)
    assert (await directory.authenticate(" alice ", "alice-pass")).user_id == "u-alice"
    messages = set()
    for login, password in [
        ("alice", "wrong"),
        ("nobody", "x"),
        ("carol", "carol-pass"),  # disabled: same answer as a wrong password
        ("alice", ""),
        ("a\x00", "x"),
        ("x" * 300, "x"),
    ]:
        with pytest.raises(Unauthenticated) as failure:
            await directory.authenticate(login, password)
        messages.add(failure.value.message)
    assert messages == {"wrong username or password"}


async def test_throttle_counts_per_account_across_login_names(store: MemoryUsers) -> None:
    directory = _read_only_directory(store, max_failures=2)
    for login in ("bob", "BOB"):  # the same account under two spellings
        with pytest.raises(Unauthenticated):
            await directory.authenticate(login, "wrong")
    with pytest.raises(ResourceExhausted):
        await directory.authenticate("Bob", "bob-pass")
    checks = store.password_checks
    with pytest.raises(ResourceExhausted):
        await directory.authenticate("bob", "bob-pass")
    assert store.password_checks == checks  # a locked account costs no password check


async def test_writes_on_a_read_only_backend_fail_precondition(store: MemoryUsers) -> None:
    directory = _read_only_directory(store)
    for call in (
        directory.create_user(NewUser("erin", "Erin"), "erin-pass"),
        directory.update_user("u-bob", NewUser("bob", "B"), ["display_name"]),
        directory.delete_user("u-bob"),
        directory.set_password("u-bob", "new-password"),
        directory.create_group(NewGroup("x")),
        directory.delete_group("g1"),
        directory.modify_group_members("g1", ["u-bob"], []),
    ):
        with pytest.raises(FailedPrecondition) as failure:
            await call
        assert failure.value.reason == "READ_ONLY_DIRECTORY"


async def test_home_servers_still_assignable_on_read_only(store: MemoryUsers) -> None:
    directory = _read_only_directory(store)
    user = await directory.set_home_server("u-bob", "ucserver-2")
    assert user.home_server_id == "ucserver-2"
    with pytest.raises(InvalidArgument) as failure:
        await directory.batch_set_home_servers(
            [HomeServerAssignment("u-bob", "a"), HomeServerAssignment("u-bob", "b")]
        )
    assert failure.value.violations[0].field == "assignments[1].user_id"
    with pytest.raises(InvalidArgument):
        await directory.batch_set_home_servers([])
    with pytest.raises(InvalidArgument):
        await directory.batch_set_home_servers(
            [HomeServerAssignment(f"u{i}", "s") for i in range(10_001)]
        )
    with pytest.raises(NotFound):
        await directory.batch_set_home_servers([HomeServerAssignment("u-nobody", "s")])


async def test_search_requires_text_and_never_sends_unsearchable_text(
    store: MemoryUsers,
) -> None:
    directory = _read_only_directory(store)
    page = await directory.search_users("brown", SearchField.ALL, 0, "")
    assert [u.username for u in page.items] == ["bob"]
    with pytest.raises(InvalidArgument):
        await directory.search_users("   ", SearchField.ALL, 0, "")
    assert list((await directory.search_users("a\x00", SearchField.ALL, 0, "")).items) == []


async def test_list_pages_with_tokens(store: MemoryUsers) -> None:
    directory = _read_only_directory(store)
    first = await directory.list_users(2, "")
    second = await directory.list_users(2, first.next_page_token)
    assert [u.username for u in [*first.items, *second.items]] == ["alice", "bob", "carol"]
    assert second.next_page_token == ""


async def test_delegation_rules(store: MemoryUsers) -> None:
    delegations = Delegations(MemoryDelegations(), store)
    await delegations.create_delegation(
        "u-alice", "u-bob", [DelegationScope.PRESENCE_SET, DelegationScope.PRESENCE_SET]
    )
    listed = await delegations.list_delegations("u-bob")
    assert listed[0].scopes == (DelegationScope.PRESENCE_SET,)
    assert await delegations.check("u-bob", "u-alice", DelegationScope.PRESENCE_SET)
    assert not await delegations.check("u-bob", "u-alice", DelegationScope.CALLS_PICKUP)
    assert await delegations.check("u-carol", "u-carol", DelegationScope.CALLS_FORWARD)
    assert not await delegations.check("u\x00", "u-alice", DelegationScope.PRESENCE_SET)
    with pytest.raises(InvalidArgument):
        await delegations.check("u-bob", "u-alice", None)
    with pytest.raises(NotFound):
        await delegations.create_delegation("u-alice", "u-ghost", [DelegationScope.PRESENCE_SET])
    await delegations.create_pickup_group(NewPickupGroup("Desk", ("u-bob", "u-carol", "u-bob")))
    assert await delegations.check("u-carol", "u-bob", DelegationScope.CALLS_PICKUP)
    assert not await delegations.check("u-carol", "u-bob", DelegationScope.CALLS_FORWARD)
    with pytest.raises(InvalidArgument):
        await delegations.create_pickup_group(NewPickupGroup("", ()))
