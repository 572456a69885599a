"""The Directory's behaviour, the same on SQLite, PostgreSQL and LDAP (through gRPC)."""

from __future__ import annotations

import grpc
import pytest

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from tests.integration.directory.conftest import (
    PASSWORDS,
    Harness,
    bad_fields,
    error_info,
    retry_seconds,
)

INJECTIONS = [
    "*)(uid=*))(|(uid=*",
    "*",
    "*)(objectClass=*",
    "\x00",
    "alice\x00",
    "x" * 10_000,
    "(",
    "\\",
    "%",
    "_",
    "' OR '1'='1",
]


async def _rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call  # type: ignore[misc]
    return failure.value


async def _all_pages(fetch: object, page_size: int) -> tuple[list[str], int]:
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = await fetch(page_size, token)  # type: ignore[operator]
        pages += 1
        names += [u.username for u in reply.users]
        token = reply.next_page_token
        if not token:
            return names, pages


# -- info and authentication -------------------------------------------------------------------


async def test_directory_info_names_the_backend(directory: Harness) -> None:
    info = await directory.stub.GetDirectoryInfo(svc.GetDirectoryInfoRequest())
    expected = pb.BACKEND_KIND_LDAP if directory.backend == "ldap" else pb.BACKEND_KIND_SQL
    assert info.backend_kind == expected
    assert info.writable == directory.writable
    assert info.description
    assert "secret" not in info.description and "password" not in info.description.lower()


async def test_login_returns_the_user_with_groups_and_admin_flag(directory: Harness) -> None:
    reply = await directory.login.Authenticate(
        svc.AuthenticateRequest(username="alice", password=PASSWORDS["alice"])
    )
    user = reply.user
    assert (user.username, user.display_name) == ("alice", "Alice Anderson")
    assert user.user_id == directory.id_of("alice")
    assert user.mail == "alice@example.com"
    assert user.admin is True
    assert set(user.group_ids) == {
        directory.groups["sales"].group_id,
        directory.groups["admins"].group_id,
    }
    bob = await directory.login.Authenticate(
        svc.AuthenticateRequest(username="bob", password=PASSWORDS["bob"])
    )
    assert bob.user.admin is False


async def test_login_by_principal_name_and_any_case(directory: Harness) -> None:
    by_upn = await directory.login.Authenticate(
        svc.AuthenticateRequest(username="carol@example.com", password=PASSWORDS["carol"])
    )
    by_case = await directory.login.Authenticate(
        svc.AuthenticateRequest(username="CAROL", password=PASSWORDS["carol"])
    )
    assert by_upn.user.user_id == by_case.user.user_id == directory.id_of("carol")


async def test_unknown_user_and_wrong_password_look_the_same(directory: Harness) -> None:
    wrong = await _rpc_error(
        directory.login.Authenticate(svc.AuthenticateRequest(username="bob", password="nope-nope"))
    )
    unknown = await _rpc_error(
        directory.login.Authenticate(
            svc.AuthenticateRequest(username="nobody", password="nope-nope")
        )
    )
    empty = await _rpc_error(
        directory.login.Authenticate(svc.AuthenticateRequest(username="bob", password=""))
    )
    for error in (wrong, unknown, empty):
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == wrong.details()
        assert error_info(error).reason == "BAD_CREDENTIALS"


async def test_repeated_failures_lock_the_account_with_retry_info(directory: Harness) -> None:
    for _ in range(3):  # max_failed_logins = 3
        error = await _rpc_error(
            directory.login.Authenticate(svc.AuthenticateRequest(username="dave", password="bad"))
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    locked = await _rpc_error(  # even the right password is refused while locked
        directory.login.Authenticate(
            svc.AuthenticateRequest(username="dave", password=PASSWORDS["dave"])
        )
    )
    assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(locked).reason == "RATE_LIMITED"
    delay = retry_seconds(locked)
    assert delay is not None and 1 <= delay <= 60
    # another account is not affected; unknown accounts are throttled alike (no enumeration)
    ok = await directory.login.Authenticate(
        svc.AuthenticateRequest(username="bob", password=PASSWORDS["bob"])
    )
    assert ok.user.username == "bob"
    for _ in range(3):
        await _rpc_error(
            directory.login.Authenticate(svc.AuthenticateRequest(username="ghost", password="x1"))
        )
    ghost = await _rpc_error(
        directory.login.Authenticate(svc.AuthenticateRequest(username="ghost", password="x1"))
    )
    assert ghost.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_injection_strings_find_nothing_and_break_nothing(directory: Harness) -> None:
    for text in INJECTIONS:
        search = await directory.stub.SearchUsers(svc.SearchUsersRequest(query=text))
        assert list(search.users) == [], text
        login = await _rpc_error(
            directory.login.Authenticate(svc.AuthenticateRequest(username=text, password=text))
        )
        assert login.code() == grpc.StatusCode.UNAUTHENTICATED
        lookup = await _rpc_error(directory.stub.GetUser(svc.GetUserRequest(username=text)))
        assert lookup.code() == grpc.StatusCode.NOT_FOUND
        by_id = await _rpc_error(directory.stub.GetUser(svc.GetUserRequest(user_id=text)))
        assert by_id.code() == grpc.StatusCode.NOT_FOUND
        homed = await directory.stub.ListUsers(svc.ListUsersRequest(home_server_id=text))
        assert list(homed.users) == []
    # and the directory still works, for the accounts whose names were tried, too
    found = await directory.stub.SearchUsers(svc.SearchUsersRequest(query="alice"))
    assert [u.username for u in found.users] == ["alice"]
    login_ok = await directory.login.Authenticate(
        svc.AuthenticateRequest(username="bob", password=PASSWORDS["bob"])
    )
    assert login_ok.user.username == "bob"


# -- reading users ------------------------------------------------------------------------------


async def test_get_user_by_id_and_by_username(directory: Harness) -> None:
    by_id = await directory.stub.GetUser(svc.GetUserRequest(user_id=directory.id_of("bob")))
    by_name = await directory.stub.GetUser(svc.GetUserRequest(username="BoB"))
    assert by_id.user == by_name.user
    assert by_id.user.phone_number == "+1 555 0102"
    assert by_id.user.group_ids == [directory.groups["sales"].group_id]
    missing = await _rpc_error(directory.stub.GetUser(svc.GetUserRequest(username="zed")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    neither = await _rpc_error(directory.stub.GetUser(svc.GetUserRequest()))
    assert neither.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(neither) == ["user_id"]


async def test_list_users_pages_through_everyone_once(directory: Harness) -> None:
    async def fetch(size: int, token: str) -> svc.ListUsersResponse:
        return await directory.stub.ListUsers(
            svc.ListUsersRequest(page_size=size, page_token=token)
        )

    for page_size, expected_pages in [(1, 4), (3, 2), (4, 1), (0, 1), (5000, 1)]:
        names, pages = await _all_pages(fetch, page_size)
        assert sorted(names) == ["alice", "bob", "carol", "dave"]
        assert pages == expected_pages, page_size


async def test_page_tokens_are_opaque_and_validated(directory: Harness) -> None:
    first = await directory.stub.ListUsers(svc.ListUsersRequest(page_size=2))
    token = first.next_page_token
    assert token and "alice" not in token and "bob" not in token
    for garbage in ["garbage", "!!!", token[:-3] + "AAA", "eyJrIjoxfQ", "x" * 5000]:
        error = await _rpc_error(
            directory.stub.ListUsers(svc.ListUsersRequest(page_size=2, page_token=garbage))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_fields(error) == ["page_token"]
    # a token only continues the listing it came from
    other = await _rpc_error(
        directory.stub.SearchUsers(svc.SearchUsersRequest(query="a", page_token=token))
    )
    assert bad_fields(other) == ["page_token"]
    filtered = await _rpc_error(
        directory.stub.ListUsers(
            svc.ListUsersRequest(page_size=2, page_token=token, home_server_id="ucserver-1")
        )
    )
    assert bad_fields(filtered) == ["page_token"]
    negative = await _rpc_error(directory.stub.ListUsers(svc.ListUsersRequest(page_size=-1)))
    assert bad_fields(negative) == ["page_size"]


async def test_search_by_name_mail_and_phone(directory: Harness) -> None:
    async def search(query: str, field: int = svc.SEARCH_FIELD_UNSPECIFIED) -> list[str]:
        reply = await directory.stub.SearchUsers(svc.SearchUsersRequest(query=query, field=field))
        return sorted(u.username for u in reply.users)

    assert await search("ANDERSON") == ["alice"]
    assert await search("ar", svc.SEARCH_FIELD_NAME) == ["carol"]  # Carol Clark
    assert await search("bob@", svc.SEARCH_FIELD_MAIL) == ["bob"]
    assert await search("5550103", svc.SEARCH_FIELD_PHONE_NUMBER) == ["carol"]
    assert await search("carol", svc.SEARCH_FIELD_PHONE_NUMBER) == []
    assert await search("example.com") == ["alice", "bob", "carol", "dave"]
    empty = await _rpc_error(directory.stub.SearchUsers(svc.SearchUsersRequest(query="  ")))
    assert bad_fields(empty) == ["query"]


async def test_search_pages(directory: Harness) -> None:
    async def fetch(size: int, token: str) -> svc.SearchUsersResponse:
        return await directory.stub.SearchUsers(
            svc.SearchUsersRequest(query="example.com", page_size=size, page_token=token)
        )

    names, pages = await _all_pages(fetch, 3)
    assert sorted(names) == ["alice", "bob", "carol", "dave"] and pages == 2


# -- home servers -------------------------------------------------------------------------------


async def test_home_servers_single_and_bulk(directory: Harness) -> None:
    reply = await directory.stub.BatchSetHomeServers(
        svc.BatchSetHomeServersRequest(
            assignments=[
                pb.HomeServerAssignment(user_id=directory.id_of(name), home_server_id=server)
                for name, server in [
                    ("alice", "ucserver-1"),
                    ("bob", "ucserver-1"),
                    ("carol", "ucserver-2"),
                ]
            ]
        )
    )
    assert reply.updated_count == 3
    single = await directory.stub.SetHomeServer(
        svc.SetHomeServerRequest(user_id=directory.id_of("dave"), home_server_id="ucserver-2")
    )
    assert single.user.home_server_id == "ucserver-2"

    async def homed(server: str) -> list[str]:
        reply = await directory.stub.ListUsers(svc.ListUsersRequest(home_server_id=server))
        return sorted(u.username for u in reply.users)

    assert await homed("ucserver-1") == ["alice", "bob"]
    assert await homed("ucserver-2") == ["carol", "dave"]
    login = await directory.login.Authenticate(
        svc.AuthenticateRequest(username="carol", password=PASSWORDS["carol"])
    )
    assert login.user.home_server_id == "ucserver-2"

    # all or nothing: one unknown user and nobody moves
    error = await _rpc_error(
        directory.stub.BatchSetHomeServers(
            svc.BatchSetHomeServersRequest(
                assignments=[
                    pb.HomeServerAssignment(
                        user_id=directory.id_of("alice"), home_server_id="ucserver-3"
                    ),
                    pb.HomeServerAssignment(
                        user_id="00000000-0000-4000-8000-000000000000",
                        home_server_id="ucserver-3",
                    ),
                ]
            )
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert await homed("ucserver-3") == []
    assert await homed("ucserver-1") == ["alice", "bob"]

    bad = await _rpc_error(
        directory.stub.SetHomeServer(
            svc.SetHomeServerRequest(user_id=directory.id_of("bob"), home_server_id="no spaces!")
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(bad) == ["assignments[0].home_server_id"] or bad_fields(bad) == [
        "home_server_id"
    ]


async def test_list_by_home_server_pages(directory: Harness) -> None:
    await directory.stub.BatchSetHomeServers(
        svc.BatchSetHomeServersRequest(
            assignments=[
                pb.HomeServerAssignment(user_id=u.user_id, home_server_id="ucserver-1")
                for name, u in directory.users.items()
                if name != "bob"
            ]
        )
    )

    async def fetch(size: int, token: str) -> svc.ListUsersResponse:
        return await directory.stub.ListUsers(
            svc.ListUsersRequest(page_size=size, page_token=token, home_server_id="ucserver-1")
        )

    names, pages = await _all_pages(fetch, 1)
    assert sorted(names) == ["alice", "carol", "dave"] and pages == 3


# -- groups -------------------------------------------------------------------------------------


async def test_groups_and_their_members(directory: Harness) -> None:
    reply = await directory.stub.ListGroups(svc.ListGroupsRequest())
    counts = {g.name: g.member_count for g in reply.groups}
    assert counts == {"sales": 2, "support": 1, "admins": 1}
    sales = directory.groups["sales"]
    assert sales.description == "Sales team"
    members = await directory.stub.ListGroupMembers(
        svc.ListGroupMembersRequest(group_id=sales.group_id)
    )
    assert sorted(u.username for u in members.users) == ["alice", "bob"]

    async def fetch(size: int, token: str) -> svc.ListGroupMembersResponse:
        return await directory.stub.ListGroupMembers(
            svc.ListGroupMembersRequest(group_id=sales.group_id, page_size=size, page_token=token)
        )

    names, pages = await _all_pages(fetch, 1)
    assert sorted(names) == ["alice", "bob"] and pages == 2
    unknown = await _rpc_error(
        directory.stub.ListGroupMembers(svc.ListGroupMembersRequest(group_id="no-such-group"))
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND


# -- delegations and pick-up groups ---------------------------------------------------------------


async def _check(directory: Harness, actor: str, principal: str, scope: int) -> bool:
    reply = await directory.stub.CheckDelegation(
        svc.CheckDelegationRequest(
            actor_user_id=directory.id_of(actor),
            principal_user_id=directory.id_of(principal),
            scope=scope,  # type: ignore[arg-type]
        )
    )
    return reply.allowed


async def test_delegations_grant_check_list_revoke(directory: Harness) -> None:
    created = await directory.stub.CreateDelegation(
        svc.CreateDelegationRequest(
            delegation=pb.Delegation(
                principal_user_id=directory.id_of("alice"),
                delegate_user_id=directory.id_of("bob"),
                scopes=[pb.DELEGATION_SCOPE_PRESENCE_SET, pb.DELEGATION_SCOPE_CALLS_FORWARD],
            )
        )
    )
    delegation = created.delegation
    assert delegation.delegation_id and delegation.create_time.seconds > 0
    assert await _check(directory, "bob", "alice", pb.DELEGATION_SCOPE_PRESENCE_SET)
    assert await _check(directory, "bob", "alice", pb.DELEGATION_SCOPE_CALLS_FORWARD)
    assert not await _check(directory, "bob", "alice", pb.DELEGATION_SCOPE_CALLS_PICKUP)
    assert not await _check(directory, "alice", "bob", pb.DELEGATION_SCOPE_PRESENCE_SET)
    assert await _check(directory, "carol", "carol", pb.DELEGATION_SCOPE_PRESENCE_SET)

    for user in ("alice", "bob"):
        listed = await directory.stub.ListDelegations(
            svc.ListDelegationsRequest(user_id=directory.id_of(user))
        )
        assert list(listed.delegations) == [delegation]
    none = await directory.stub.ListDelegations(
        svc.ListDelegationsRequest(user_id=directory.id_of("carol"))
    )
    assert list(none.delegations) == []

    again = await _rpc_error(
        directory.stub.CreateDelegation(svc.CreateDelegationRequest(delegation=delegation))
    )
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    await directory.stub.DeleteDelegation(
        svc.DeleteDelegationRequest(delegation_id=delegation.delegation_id)
    )
    assert not await _check(directory, "bob", "alice", pb.DELEGATION_SCOPE_PRESENCE_SET)
    gone = await _rpc_error(
        directory.stub.DeleteDelegation(
            svc.DeleteDelegationRequest(delegation_id=delegation.delegation_id)
        )
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_delegations_are_refused(directory: Harness) -> None:
    alice, bob = directory.id_of("alice"), directory.id_of("bob")
    cases = [
        (pb.Delegation(principal_user_id=alice, delegate_user_id=bob), "delegation.scopes"),
        (
            pb.Delegation(
                principal_user_id=alice,
                delegate_user_id=bob,
                scopes=[pb.DELEGATION_SCOPE_UNSPECIFIED],
            ),
            "delegation.scopes[0]",
        ),
        (
            pb.Delegation(
                principal_user_id=alice,
                delegate_user_id=alice,
                scopes=[pb.DELEGATION_SCOPE_PRESENCE_SET],
            ),
            "delegation.delegate_user_id",
        ),
    ]
    for delegation, field in cases:
        error = await _rpc_error(
            directory.stub.CreateDelegation(svc.CreateDelegationRequest(delegation=delegation))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_fields(error) == [field]
    unknown = await _rpc_error(
        directory.stub.CreateDelegation(
            svc.CreateDelegationRequest(
                delegation=pb.Delegation(
                    principal_user_id=alice,
                    delegate_user_id="00000000-0000-4000-8000-000000000000",
                    scopes=[pb.DELEGATION_SCOPE_PRESENCE_SET],
                )
            )
        )
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    scopeless = await _rpc_error(
        directory.stub.CheckDelegation(
            svc.CheckDelegationRequest(actor_user_id=bob, principal_user_id=alice)
        )
    )
    assert bad_fields(scopeless) == ["scope"]


async def test_pickup_groups_allow_pickup_among_members(directory: Harness) -> None:
    created = await directory.stub.CreatePickupGroup(
        svc.CreatePickupGroupRequest(
            pickup_group=pb.PickupGroup(
                name="Front desk",
                member_user_ids=[directory.id_of("bob"), directory.id_of("carol")],
            )
        )
    )
    group = created.pickup_group
    assert await _check(directory, "bob", "carol", pb.DELEGATION_SCOPE_CALLS_PICKUP)
    assert await _check(directory, "carol", "bob", pb.DELEGATION_SCOPE_CALLS_PICKUP)
    assert not await _check(directory, "bob", "carol", pb.DELEGATION_SCOPE_PRESENCE_SET)
    assert not await _check(directory, "dave", "carol", pb.DELEGATION_SCOPE_CALLS_PICKUP)

    mine = await directory.stub.ListPickupGroups(
        svc.ListPickupGroupsRequest(user_id=directory.id_of("carol"))
    )
    assert [g.name for g in mine.pickup_groups] == ["Front desk"]
    duplicate = await _rpc_error(
        directory.stub.CreatePickupGroup(
            svc.CreatePickupGroupRequest(pickup_group=pb.PickupGroup(name="FRONT DESK"))
        )
    )
    assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS

    updated = await directory.stub.UpdatePickupGroup(
        svc.UpdatePickupGroupRequest(
            pickup_group=pb.PickupGroup(
                pickup_group_id=group.pickup_group_id,
                name="Front desk",
                member_user_ids=[directory.id_of("bob"), directory.id_of("dave")],
            )
        )
    )
    assert set(updated.pickup_group.member_user_ids) == {
        directory.id_of("bob"),
        directory.id_of("dave"),
    }
    assert not await _check(directory, "bob", "carol", pb.DELEGATION_SCOPE_CALLS_PICKUP)
    assert await _check(directory, "dave", "bob", pb.DELEGATION_SCOPE_CALLS_PICKUP)

    await directory.stub.DeletePickupGroup(
        svc.DeletePickupGroupRequest(pickup_group_id=group.pickup_group_id)
    )
    everything = await directory.stub.ListPickupGroups(svc.ListPickupGroupsRequest())
    assert list(everything.pickup_groups) == []
    assert not await _check(directory, "dave", "bob", pb.DELEGATION_SCOPE_CALLS_PICKUP)
