"""What only the Active Directory / LDAP backend does (against a real slapd)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import ldap3
import pytest
from google.protobuf import field_mask_pb2

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from tests.helpers.slapd import AdDirectory, SlapdServer, ssha
from tests.integration.directory.conftest import PASSWORDS, Harness, error_info

MakeHarness = Callable[..., AsyncIterator[Harness]]


async def _rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call  # type: ignore[misc]
    return failure.value


def _add_user(server: SlapdServer, ad: AdDirectory, sam: str, display: str, **extra: str) -> None:
    attributes: dict[str, str | list[str]] = {
        "cn": display,
        "sn": display.split()[-1],
        "displayName": display,
        "sAMAccountName": sam,
        "userPrincipalName": f"{sam}@{ad.domain}",
        "mail": f"{sam}@{ad.domain}",
        "userPassword": ssha(f"{sam}-pass"),
        **extra,
    }
    dn = f"cn={ldap3.utils.dn.escape_rdn(display)},{ad.users_dn}"
    server.add_entry(dn, ["top", "inetOrgPerson", "user"], attributes)


async def test_writes_answer_read_only_naming_active_directory(
    ldap_harness_factory: MakeHarness,
) -> None:
    async for directory in ldap_harness_factory():
        stub = directory.stub
        bob = directory.id_of("bob")
        calls = [
            stub.CreateUser(
                svc.CreateUserRequest(user=pb.User(username="erin", display_name="Erin"))
            ),
            stub.UpdateUser(
                svc.UpdateUserRequest(
                    user=pb.User(user_id=bob, display_name="Robert"),
                    update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                )
            ),
            stub.DeleteUser(svc.DeleteUserRequest(user_id=bob)),
            stub.SetPassword(svc.SetPasswordRequest(user_id=bob, password="new-password")),
            stub.CreateGroup(svc.CreateGroupRequest(group=pb.Group(name="x"))),
            stub.DeleteGroup(svc.DeleteGroupRequest(group_id=directory.groups["sales"].group_id)),
            stub.ModifyGroupMembers(
                svc.ModifyGroupMembersRequest(
                    group_id=directory.groups["sales"].group_id, add_user_ids=[bob]
                )
            ),
        ]
        for call in calls:
            error = await _rpc_error(call)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(error).reason == "READ_ONLY_DIRECTORY"
            assert "Active Directory" in (error.details() or "")
        still = await stub.GetUser(svc.GetUserRequest(user_id=bob))
        assert still.user.display_name == "Bob Brown"


async def test_home_server_from_group_membership_with_override(
    ldap_harness_factory: MakeHarness,
) -> None:
    groups = {"sales": "ucserver-1", "cn=support,ou=groups,dc=example,dc=com": "ucserver-2"}
    async for directory in ldap_harness_factory(home_server_groups=groups):
        homes = {name: user.home_server_id for name, user in directory.users.items()}
        assert homes == {
            "alice": "ucserver-1",
            "bob": "ucserver-1",
            "carol": "ucserver-2",
            "dave": "",
        }
        # an assignment made through procall wins, and removing it falls back to AD
        moved = await directory.stub.SetHomeServer(
            svc.SetHomeServerRequest(user_id=directory.id_of("bob"), home_server_id="ucserver-9")
        )
        assert moved.user.home_server_id == "ucserver-9"
        homed = await directory.stub.ListUsers(svc.ListUsersRequest(home_server_id="ucserver-1"))
        assert [u.username for u in homed.users] == ["alice"]
        back = await directory.stub.SetHomeServer(
            svc.SetHomeServerRequest(user_id=directory.id_of("bob"), home_server_id="")
        )
        assert back.user.home_server_id == "ucserver-1"


async def test_home_server_from_an_attribute(
    ldap_harness_factory: MakeHarness, slapd_server: SlapdServer, ldap_directory: AdDirectory
) -> None:
    conn = slapd_server.connect()
    conn.modify(
        ldap_directory.user_dn("carol"), {"description": [(ldap3.MODIFY_REPLACE, ["ucserver-7"])]}
    )
    conn.unbind()
    async for directory in ldap_harness_factory(
        home_server_attribute="description", home_server_groups={"sales": "ucserver-1"}
    ):
        assert directory.users["carol"].home_server_id == "ucserver-7"
        assert directory.users["alice"].home_server_id == "ucserver-1"  # groups as fallback
        login = await directory.login.Authenticate(
            svc.AuthenticateRequest(username="carol", password=PASSWORDS["carol"])
        )
        assert login.user.home_server_id == "ucserver-7"


async def test_custom_attribute_map_and_admin_group_by_dn(
    ldap_harness_factory: MakeHarness, ldap_directory: AdDirectory
) -> None:
    async for directory in ldap_harness_factory(
        attributes={"username": "uid", "display_name": "cn", "phone_number": "mobile"},
        admin_group=ldap_directory.group_dn("sales"),
    ):
        alice = directory.users["alice"]
        assert alice.phone_number == "+1 555 0201"  # mobile
        assert alice.admin and directory.users["bob"].admin
        assert not directory.users["carol"].admin
        login = await directory.login.Authenticate(
            svc.AuthenticateRequest(username="alice", password=PASSWORDS["alice"])
        )
        assert login.user.user_id == alice.user_id


async def test_paging_over_many_entries_with_small_ldap_pages(
    ldap_harness_factory: MakeHarness, slapd_server: SlapdServer, ldap_directory: AdDirectory
) -> None:
    for index in range(30):
        _add_user(slapd_server, ldap_directory, f"temp{index:02d}", f"Temp User {index:02d}")
    async for directory in ldap_harness_factory(page_size=4):
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            reply = await directory.stub.ListUsers(
                svc.ListUsersRequest(page_size=7, page_token=token)
            )
            seen += [u.username for u in reply.users]
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) == 34 and pages == 5
        found = await directory.stub.SearchUsers(
            svc.SearchUsersRequest(query="temp user 1", field=svc.SEARCH_FIELD_NAME)
        )
        assert sorted(u.username for u in found.users) == [f"temp{i}" for i in range(10, 20)]


async def test_pages_stay_consistent_when_the_directory_changes(
    ldap_harness_factory: MakeHarness, slapd_server: SlapdServer, ldap_directory: AdDirectory
) -> None:
    async for directory in ldap_harness_factory(page_size=2):
        first = await directory.stub.ListUsers(svc.ListUsersRequest(page_size=2))
        seen = [u.username for u in first.users]
        # an entry before the cursor disappears: the next page must not repeat or skip anyone
        conn = slapd_server.connect()
        gone = first.users[0].username
        conn.delete(ldap_directory.user_dn(gone))
        conn.unbind()
        _add_user(slapd_server, ldap_directory, "erin", "Erin Evans")
        token = first.next_page_token
        while token:
            reply = await directory.stub.ListUsers(
                svc.ListUsersRequest(page_size=2, page_token=token)
            )
            seen += [u.username for u in reply.users]
            token = reply.next_page_token
        assert len(seen) == len(set(seen))
        assert {"alice", "bob", "carol", "dave"} - {gone} <= set(seen)


async def test_dn_with_special_characters_logs_in(
    ldap_harness_factory: MakeHarness, slapd_server: SlapdServer, ldap_directory: AdDirectory
) -> None:
    _add_user(slapd_server, ldap_directory, "obrien", "Pat O'Brien, Jr. (Sales)")
    async for directory in ldap_harness_factory():
        login = await directory.login.Authenticate(
            svc.AuthenticateRequest(username="obrien", password="obrien-pass")
        )
        assert login.user.display_name == "Pat O'Brien, Jr. (Sales)"
        found = await directory.stub.SearchUsers(svc.SearchUsersRequest(query="Jr. (Sales"))
        assert [u.username for u in found.users] == ["obrien"]


async def test_delegations_with_ldap_users_live_in_the_side_database(
    ldap_harness_factory: MakeHarness, tmp_path: object
) -> None:
    delegation_id = ""
    async for directory in ldap_harness_factory():
        created = await directory.stub.CreateDelegation(
            svc.CreateDelegationRequest(
                delegation=pb.Delegation(
                    principal_user_id=directory.id_of("alice"),
                    delegate_user_id=directory.id_of("carol"),
                    scopes=[pb.DELEGATION_SCOPE_CALLS_PICKUP],
                )
            )
        )
        delegation_id = created.delegation.delegation_id
    async for directory in ldap_harness_factory():  # a restarted Directory still knows it
        listed = await directory.stub.ListDelegations(svc.ListDelegationsRequest())
        assert [d.delegation_id for d in listed.delegations] == [delegation_id]
        allowed = await directory.stub.CheckDelegation(
            svc.CheckDelegationRequest(
                actor_user_id=directory.id_of("carol"),
                principal_user_id=directory.id_of("alice"),
                scope=pb.DELEGATION_SCOPE_CALLS_PICKUP,
            )
        )
        assert allowed.allowed
