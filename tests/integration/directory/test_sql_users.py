"""User administration on the SQL backends (SQLite, PostgreSQL) through gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.storage.sql import SqlDatabase
from procall.storage.sql.tables import users
from tests.integration.directory.conftest import (
    PASSWORDS,
    Harness,
    bad_fields,
    directory_settings,
    error_info,
    start_directory,
)


async def _rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call  # type: ignore[misc]
    return failure.value


def _user(**fields: object) -> pb.User:
    values: dict[str, object] = {"username": "erin", "display_name": "Erin Evans"}
    values.update(fields)
    return pb.User(**values)  # type: ignore[arg-type]


async def test_create_user_with_every_field_and_log_in(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    created = await stub.CreateUser(
        svc.CreateUserRequest(
            user=_user(
                mail="Erin@Example.com",
                phone_number="+49 (231) 555-0199",
                department="Research & Development",
                home_server_id="ucserver-2",
                principal_name="erin@corp.example.com",
                group_ids=[sql_directory.groups["support"].group_id],
                user_id="ignored",
            ),
            password="erin-secret-1",
        )
    )
    user = created.user
    assert user.user_id and user.user_id != "ignored"
    assert (user.mail, user.department, user.home_server_id) == (
        "Erin@Example.com",
        "Research & Development",
        "ucserver-2",
    )
    assert user.create_time.seconds > 0 and user.update_time == user.create_time
    fetched = await stub.GetUser(svc.GetUserRequest(user_id=user.user_id))
    assert fetched.user == user
    login = await sql_directory.login.Authenticate(
        svc.AuthenticateRequest(username="erin@corp.example.com", password="erin-secret-1")
    )
    assert login.user.user_id == user.user_id
    members = await stub.ListGroupMembers(
        svc.ListGroupMembersRequest(group_id=sql_directory.groups["support"].group_id)
    )
    assert sorted(u.username for u in members.users) == ["carol", "erin"]
    # searches see the new user by department (case-insensitive) and phone digits
    by_department = await stub.SearchUsers(
        svc.SearchUsersRequest(query="r & d", field=svc.SEARCH_FIELD_DEPARTMENT)
    )
    assert list(by_department.users) == []
    by_department = await stub.SearchUsers(
        svc.SearchUsersRequest(query="RESEARCH", field=svc.SEARCH_FIELD_DEPARTMENT)
    )
    assert [u.username for u in by_department.users] == ["erin"]
    by_phone = await stub.SearchUsers(svc.SearchUsersRequest(query="2315550199"))
    assert [u.username for u in by_phone.users] == ["erin"]


async def test_user_without_password_cannot_log_in(sql_directory: Harness) -> None:
    await sql_directory.stub.CreateUser(svc.CreateUserRequest(user=_user()))
    error = await _rpc_error(
        sql_directory.login.Authenticate(svc.AuthenticateRequest(username="erin", password="x"))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_duplicates_are_already_exists(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    for user in (
        _user(username="ALICE"),
        _user(mail="BOB@example.com"),
        _user(principal_name="carol@EXAMPLE.com"),
    ):
        error = await _rpc_error(stub.CreateUser(svc.CreateUserRequest(user=user)))
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_info(error).reason == "ALREADY_EXISTS"
    group = await _rpc_error(stub.CreateGroup(svc.CreateGroupRequest(group=pb.Group(name="Sales"))))
    assert group.code() == grpc.StatusCode.ALREADY_EXISTS
    # several users without mail are fine (unique only when set)
    for name in ("erin", "frank"):
        await stub.CreateUser(svc.CreateUserRequest(user=_user(username=name, mail="")))


INVALID = [
    ({"username": ""}, "", "user.username"),
    ({"username": "bad name"}, "", "user.username"),
    ({"username": "x" * 65}, "", "user.username"),
    ({"display_name": "  "}, "", "user.display_name"),
    ({"display_name": "Nul\x00Byte"}, "", "user.display_name"),
    ({"mail": "not-a-mail"}, "", "user.mail"),
    ({"phone_number": "call me"}, "", "user.phone_number"),
    ({"home_server_id": "two words"}, "", "user.home_server_id"),
    ({"department": "d" * 200}, "", "user.department"),
    ({"principal_name": "nope"}, "", "user.principal_name"),
    ({"group_ids": ["no-such-group"]}, "", "user.group_ids"),
    ({}, "short", "password"),
    ({}, "p" * 2000, "password"),
]


async def test_invalid_fields_are_named(sql_directory: Harness) -> None:
    for fields, password, field in INVALID:
        error = await _rpc_error(
            sql_directory.stub.CreateUser(
                svc.CreateUserRequest(user=_user(**fields), password=password)
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert bad_fields(error) == [field]
        assert field in (error.details() or "")
        assert error_info(error).reason == "INVALID_FIELD"
    listed = await sql_directory.stub.ListUsers(svc.ListUsersRequest())
    assert len(listed.users) == 4  # nothing was created


async def test_update_changes_only_the_masked_fields(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    bob = sql_directory.users["bob"]
    changed = await stub.UpdateUser(
        svc.UpdateUserRequest(
            user=pb.User(user_id=bob.user_id, display_name="Robert Brown", mail="ignored@x.io"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    assert changed.user.display_name == "Robert Brown"
    assert changed.user.mail == bob.mail
    assert changed.user.update_time.ToDatetime() > bob.update_time.ToDatetime()
    found = await stub.SearchUsers(svc.SearchUsersRequest(query="robert"))
    assert [u.username for u in found.users] == ["bob"]

    taken = await _rpc_error(
        stub.UpdateUser(
            svc.UpdateUserRequest(
                user=pb.User(user_id=bob.user_id, username="Alice"),
                update_mask=field_mask_pb2.FieldMask(paths=["username"]),
            )
        )
    )
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    unknown_path = await _rpc_error(
        stub.UpdateUser(
            svc.UpdateUserRequest(
                user=pb.User(user_id=bob.user_id),
                update_mask=field_mask_pb2.FieldMask(paths=["create_time"]),
            )
        )
    )
    assert bad_fields(unknown_path) == ["update_mask"]
    missing = await _rpc_error(
        stub.UpdateUser(
            svc.UpdateUserRequest(
                user=pb.User(user_id="00000000-0000-4000-8000-000000000000", display_name="X"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            )
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_two_admins_updating_one_read_of_a_user_one_wins_the_other_aborted(
    sql_directory: Harness,
) -> None:
    stub = sql_directory.stub
    read = (await stub.GetUser(svc.GetUserRequest(user_id=sql_directory.users["bob"].user_id))).user
    assert read.etag

    def change(name: str) -> object:
        return stub.UpdateUser(
            svc.UpdateUserRequest(
                user=pb.User(user_id=read.user_id, display_name=name, etag=read.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            )
        )

    results = await asyncio.gather(
        change("Bob One"),
        change("Bob Two"),
        return_exceptions=True,  # type: ignore[arg-type]
    )
    won = [r for r in results if isinstance(r, svc.UpdateUserResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].code() == grpc.StatusCode.ABORTED
    assert error_info(lost[0]).reason == "STALE_VERSION"
    assert won[0].user.etag != read.etag
    now = (await stub.GetUser(svc.GetUserRequest(user_id=read.user_id))).user
    assert now.display_name == won[0].user.display_name  # the loser overwrote nothing
    # without an etag there is no check (last write wins, as before)
    await change_without_etag(stub, read.user_id)


async def change_without_etag(stub: object, user_id: str) -> None:
    """An update without etag goes through whatever changed meanwhile."""
    reply = await stub.UpdateUser(  # type: ignore[attr-defined]
        svc.UpdateUserRequest(
            user=pb.User(user_id=user_id, display_name="Bob"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    assert reply.user.display_name == "Bob"


async def test_update_without_mask_replaces_all_fields_and_disable_blocks_login(
    sql_directory: Harness,
) -> None:
    stub = sql_directory.stub
    dave = sql_directory.users["dave"]
    replaced = await stub.UpdateUser(
        svc.UpdateUserRequest(
            user=pb.User(
                user_id=dave.user_id, username="dave", display_name="Dave D.", disabled=True
            )
        )
    )
    assert replaced.user.mail == "" and replaced.user.disabled
    error = await _rpc_error(
        sql_directory.login.Authenticate(
            svc.AuthenticateRequest(username="dave", password=PASSWORDS["dave"])
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_delete_user_removes_memberships_and_delegations(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    alice, bob = sql_directory.id_of("alice"), sql_directory.id_of("bob")
    await stub.CreateDelegation(
        svc.CreateDelegationRequest(
            delegation=pb.Delegation(
                principal_user_id=alice,
                delegate_user_id=bob,
                scopes=[pb.DELEGATION_SCOPE_PRESENCE_SET],
            )
        )
    )
    await stub.CreatePickupGroup(
        svc.CreatePickupGroupRequest(
            pickup_group=pb.PickupGroup(name="Sales desk", member_user_ids=[alice, bob])
        )
    )
    await stub.DeleteUser(svc.DeleteUserRequest(user_id=bob))
    gone = await _rpc_error(stub.GetUser(svc.GetUserRequest(user_id=bob)))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert list((await stub.ListDelegations(svc.ListDelegationsRequest())).delegations) == []
    groups = await stub.ListPickupGroups(svc.ListPickupGroupsRequest())
    assert [list(g.member_user_ids) for g in groups.pickup_groups] == [[alice]]
    sales = await stub.ListGroups(svc.ListGroupsRequest())
    assert {g.name: g.member_count for g in sales.groups}["sales"] == 1
    again = await _rpc_error(stub.DeleteUser(svc.DeleteUserRequest(user_id=bob)))
    assert again.code() == grpc.StatusCode.NOT_FOUND


async def test_set_password_replaces_the_old_one(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    carol = sql_directory.id_of("carol")
    await stub.SetPassword(svc.SetPasswordRequest(user_id=carol, password="brand-new-pass"))
    old = await _rpc_error(
        sql_directory.login.Authenticate(
            svc.AuthenticateRequest(username="carol", password=PASSWORDS["carol"])
        )
    )
    assert old.code() == grpc.StatusCode.UNAUTHENTICATED
    new = await sql_directory.login.Authenticate(
        svc.AuthenticateRequest(username="carol", password="brand-new-pass")
    )
    assert new.user.user_id == carol
    short = await _rpc_error(stub.SetPassword(svc.SetPasswordRequest(user_id=carol, password="x")))
    assert bad_fields(short) == ["password"]


async def test_groups_create_modify_delete(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    created = await stub.CreateGroup(
        svc.CreateGroupRequest(group=pb.Group(name="Night shift", description="after 22:00"))
    )
    group_id = created.group.group_id
    changed = await stub.ModifyGroupMembers(
        svc.ModifyGroupMembersRequest(
            group_id=group_id,
            add_user_ids=[sql_directory.id_of("bob"), sql_directory.id_of("dave")],
        )
    )
    assert changed.group.member_count == 2
    changed = await stub.ModifyGroupMembers(
        svc.ModifyGroupMembersRequest(
            group_id=group_id,
            add_user_ids=[sql_directory.id_of("bob")],  # already a member: left alone
            remove_user_ids=[sql_directory.id_of("dave"), sql_directory.id_of("carol")],
        )
    )
    assert changed.group.member_count == 1
    bob = await stub.GetUser(svc.GetUserRequest(username="bob"))
    assert group_id in bob.user.group_ids
    unknown_user = await _rpc_error(
        stub.ModifyGroupMembers(
            svc.ModifyGroupMembersRequest(
                group_id=group_id, add_user_ids=["00000000-0000-4000-8000-000000000000"]
            )
        )
    )
    assert unknown_user.code() == grpc.StatusCode.NOT_FOUND
    await stub.DeleteGroup(svc.DeleteGroupRequest(group_id=group_id))
    bob = await stub.GetUser(svc.GetUserRequest(username="bob"))
    assert group_id not in bob.user.group_ids
    listed = await stub.ListGroups(svc.ListGroupsRequest(page_size=1))
    assert len(listed.groups) == 1 and listed.next_page_token
    bad_name = await _rpc_error(stub.CreateGroup(svc.CreateGroupRequest(group=pb.Group(name=""))))
    assert bad_fields(bad_name) == ["group.name"]


async def test_non_ascii_names_search_case_insensitively(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    await stub.CreateUser(
        svc.CreateUserRequest(user=_user(username="oezdemir", display_name="Jürgen Özdemir"))
    )
    for query in ("ÖZDEMIR", "jürgen", "rgen Ö"):
        found = await stub.SearchUsers(svc.SearchUsersRequest(query=query))
        assert [u.username for u in found.users] == ["oezdemir"], query
    # LIKE wildcards are literal
    for query in ("%", "_", "J%n", "[a-z]"):
        found = await stub.SearchUsers(svc.SearchUsersRequest(query=query))
        assert list(found.users) == [], query


async def test_many_users_page_in_username_order(sql_directory: Harness) -> None:
    stub = sql_directory.stub
    for index in range(25):
        await stub.CreateUser(
            svc.CreateUserRequest(
                user=_user(username=f"user{index:02d}", display_name=f"U {index}")
            )
        )
    names: list[str] = []
    token = ""
    while True:
        reply = await stub.ListUsers(svc.ListUsersRequest(page_size=7, page_token=token))
        names += [u.username for u in reply.users]
        token = reply.next_page_token
        if not token:
            break
    assert names == sorted(names, key=str.lower) and len(names) == len(set(names)) == 29


async def test_login_rehashes_a_password_made_with_old_parameters(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"

    async def stored_hash() -> str:
        database = SqlDatabase(url, name="user database")
        try:
            async with database.connect() as conn:
                row = (
                    await conn.execute(
                        select(users.c.password_hash).where(users.c.username_key == "erin")
                    )
                ).one()
        finally:
            await database.dispose()
        return str(row.password_hash)

    old = directory_settings(url)  # t=1, m=64
    app, channel = await start_directory(old)
    stub = directory_grpc.DirectoryServiceStub(channel)
    await stub.CreateUser(svc.CreateUserRequest(user=_user(), password="erin-secret-1"))
    await channel.close()
    await app.stop(0)
    before = await stored_hash()
    assert "$argon2id$" in before and "m=64,t=1,p=1" in before

    new = directory_settings(url, argon2_time_cost=2, argon2_memory_kib=128)
    app, channel = await start_directory(new, role="ucserver")
    stub = directory_grpc.DirectoryServiceStub(channel)
    try:
        failed = await _rpc_error(
            stub.Authenticate(svc.AuthenticateRequest(username="erin", password="wrong-one"))
        )
        assert failed.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await stored_hash() == before  # a wrong password changes nothing
        await stub.Authenticate(svc.AuthenticateRequest(username="erin", password="erin-secret-1"))
        after = await stored_hash()
        assert after != before and "m=128,t=2,p=1" in after
        again = await stub.Authenticate(
            svc.AuthenticateRequest(username="erin", password="erin-secret-1")
        )
        assert again.user.username == "erin" and await stored_hash() == after
    finally:
        await channel.close()
        await app.stop(0)
