"""Issue 10's Directory findings, against real servers: nobody unauthenticated changes
anything, a user's token changes only what is the user's, Authenticate is no password
oracle, and the phone book shows no account state or connection strings."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from tests.helpers.topology import PASSWORD, error_info, login, operator_channel, wait_for
from tests.integration.security.conftest import Secured


async def _refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value


def _writes(secured: Secured) -> dict[str, Awaitable[object]]:
    """One call of every kind of Directory write, aimed at bob (or making alice admin)."""
    users = secured.system.users
    stub = secured.directory
    return {
        "CreateUser": stub.CreateUser(
            svc.CreateUserRequest(
                user=pb.User(username="mallory", display_name="M", admin=True),
                password="mallory-password-1",
            )
        ),
        "SetPassword": stub.SetPassword(
            svc.SetPasswordRequest(user_id=users["bob"], password="taken-over-123")
        ),
        "UpdateUser": stub.UpdateUser(
            svc.UpdateUserRequest(
                user=pb.User(user_id=users["alice"], admin=True),
                update_mask=field_mask_pb2.FieldMask(paths=["admin"]),
            )
        ),
        "SetHomeServer": stub.SetHomeServer(
            svc.SetHomeServerRequest(user_id=users["bob"], home_server_id="uc-evil")
        ),
        "CreateDelegation": stub.CreateDelegation(
            svc.CreateDelegationRequest(
                delegation=pb.Delegation(
                    principal_user_id=users["bob"],
                    delegate_user_id=users["alice"],
                    scopes=[pb.DELEGATION_SCOPE_PRESENCE_SET],
                )
            )
        ),
        "DeleteUser": stub.DeleteUser(svc.DeleteUserRequest(user_id=users["bob"])),
    }


async def _nothing_changed(secured: Secured) -> None:
    """bob still logs in with his password on his home server, alice is no admin."""
    address = secured.system.ucservers["uc-1"].address
    bob = await login(address, "bob")
    assert bob.session.user_id == secured.system.users["bob"]
    async with operator_channel(secured.system.directory.address) as channel:
        stub = directory_grpc.DirectoryServiceStub(channel)
        alice = await stub.GetUser(svc.GetUserRequest(user_id=secured.system.users["alice"]))
        assert not alice.user.admin
        missing = await _refused(stub.GetUser(svc.GetUserRequest(username="mallory")))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        delegations = await stub.ListDelegations(
            svc.ListDelegationsRequest(user_id=secured.system.users["bob"])
        )
        assert not delegations.delegations


async def test_unauthenticated_directory_writes_are_refused(secured: Secured) -> None:
    for name, call in _writes(secured).items():
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert error_info(error).reason == "BAD_CREDENTIALS", name
    await _nothing_changed(secured)


async def test_unauthenticated_reads_and_authenticate_are_refused(secured: Secured) -> None:
    stub = secured.directory
    for call in (
        stub.ListUsers(svc.ListUsersRequest()),
        stub.GetDirectoryInfo(svc.GetDirectoryInfoRequest()),
        stub.Authenticate(svc.AuthenticateRequest(username="bob", password=PASSWORD)),
    ):
        assert (await _refused(call)).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_users_token_cannot_administer_the_directory(secured: Secured) -> None:
    stub = secured.directory
    users = secured.system.users
    alice = secured.auth("alice")
    for call in (
        stub.CreateUser(
            svc.CreateUserRequest(user=pb.User(username="m2", display_name="M"), password="x" * 12),
            metadata=alice,
        ),
        stub.SetPassword(
            svc.SetPasswordRequest(user_id=users["bob"], password="taken-over-123"), metadata=alice
        ),
        stub.SetPassword(
            svc.SetPasswordRequest(
                user_id=users["bob"], password="taken-over-123", old_password=PASSWORD
            ),
            metadata=alice,
        ),
        stub.UpdateUser(
            svc.UpdateUserRequest(
                user=pb.User(user_id=users["alice"], admin=True),
                update_mask=field_mask_pb2.FieldMask(paths=["admin"]),
            ),
            metadata=alice,
        ),
        stub.SetHomeServer(
            svc.SetHomeServerRequest(user_id=users["alice"], home_server_id="uc-2"), metadata=alice
        ),
        stub.DeleteUser(svc.DeleteUserRequest(user_id=users["bob"]), metadata=alice),
    ):
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    await _nothing_changed(secured)


async def test_authenticate_from_a_users_token_or_the_operator_is_refused(
    secured: Secured,
) -> None:
    request = svc.AuthenticateRequest(username="bob", password=PASSWORD)
    error = await _refused(secured.directory.Authenticate(request, metadata=secured.auth("alice")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    async with operator_channel(secured.system.directory.address) as channel:
        error = await _refused(directory_grpc.DirectoryServiceStub(channel).Authenticate(request))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    async with operator_channel(secured.system.directory.address, "ucserver") as channel:
        reply = await directory_grpc.DirectoryServiceStub(channel).Authenticate(request)
    assert reply.user.username == "bob"


async def test_a_user_changes_only_their_own_password_and_needs_the_old_one(
    secured: Secured,
) -> None:
    stub = secured.directory
    alice_id = secured.system.users["alice"]
    alice = secured.auth("alice")
    without_old = await _refused(
        stub.SetPassword(
            svc.SetPasswordRequest(user_id=alice_id, password="new-pass-1234"), metadata=alice
        )
    )
    assert without_old.code() == grpc.StatusCode.INVALID_ARGUMENT
    wrong_old = await _refused(
        stub.SetPassword(
            svc.SetPasswordRequest(
                user_id=alice_id, password="new-pass-1234", old_password="not-my-password"
            ),
            metadata=alice,
        )
    )
    assert wrong_old.code() == grpc.StatusCode.PERMISSION_DENIED
    await stub.SetPassword(
        svc.SetPasswordRequest(user_id=alice_id, password="new-pass-1234", old_password=PASSWORD),
        metadata=alice,
    )
    async with operator_channel(secured.system.directory.address, "ucserver") as channel:
        login_stub = directory_grpc.DirectoryServiceStub(channel)
        reply = await login_stub.Authenticate(
            svc.AuthenticateRequest(username="alice", password="new-pass-1234")
        )
    assert reply.user.user_id == alice_id


async def test_a_user_changes_only_their_own_name_and_number(secured: Secured) -> None:
    stub = secured.directory
    users = secured.system.users
    alice = secured.auth("alice")
    mine = await stub.UpdateUser(
        svc.UpdateUserRequest(
            user=pb.User(
                user_id=users["alice"], display_name="Alice A.", phone_number="+1 555 0100"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "phone_number"]),
        ),
        metadata=alice,
    )
    assert (mine.user.display_name, mine.user.phone_number) == ("Alice A.", "+1 555 0100")
    for user_id, paths in (
        (users["bob"], ["display_name"]),  # not hers
        (users["alice"], ["display_name", "home_server_id"]),  # not hers to change
        (users["alice"], []),  # an empty mask means every field
    ):
        error = await _refused(
            stub.UpdateUser(
                svc.UpdateUserRequest(
                    user=pb.User(user_id=user_id, display_name="X", home_server_id="uc-2"),
                    update_mask=field_mask_pb2.FieldMask(paths=paths),
                ),
                metadata=alice,
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, paths


async def test_an_administrators_token_administers_the_directory(secured: Secured) -> None:
    root = secured.auth("root")
    created = await secured.directory.CreateUser(
        svc.CreateUserRequest(
            user=pb.User(username="frank", display_name="Frank", home_server_id="uc-1"),
            password="frank-password-1",
        ),
        metadata=root,
    )
    await secured.directory.SetPassword(
        svc.SetPasswordRequest(user_id=secured.system.users["bob"], password="reset-by-admin-1"),
        metadata=root,
    )
    info = await secured.directory.GetDirectoryInfo(svc.GetDirectoryInfoRequest(), metadata=root)
    assert info.description  # administrators see which database it is
    assert created.user.username == "frank"


async def test_the_phone_book_shows_no_account_state_or_connection_strings(
    secured: Secured,
) -> None:
    alice = secured.auth("alice")
    listed = await secured.directory.ListUsers(svc.ListUsersRequest(), metadata=alice)
    by_name = {u.username: u for u in listed.users}
    assert set(by_name) == {"alice", "bob", "root"}
    root = by_name["root"]
    assert (root.display_name, root.home_server_id) == ("Root", "uc-1")
    for user in listed.users:
        assert not user.admin and not user.disabled
        assert not user.HasField("create_time") and not user.HasField("update_time")
    info = await secured.directory.GetDirectoryInfo(svc.GetDirectoryInfoRequest(), metadata=alice)
    assert info.writable and info.description == ""
    assert "sqlite" not in str(info).lower()


async def test_a_token_of_a_session_that_logged_out_is_refused_by_the_directory(
    secured: Secured,
) -> None:
    bob = secured.auth("bob")
    search = svc.SearchUsersRequest(query="alice")
    found = await secured.directory.SearchUsers(search, metadata=bob)
    assert [u.username for u in found.users] == ["alice"]
    async with grpc.aio.insecure_channel(secured.system.ucservers["uc-1"].address) as channel:
        await session_grpc.SessionServiceStub(channel).Logout(
            session_pb.LogoutRequest(), metadata=bob
        )

    async def refused() -> bool:
        try:
            await secured.directory.SearchUsers(search, metadata=bob)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "logged out" in (error.details() or "")
            return True
        return False

    # the Directory follows the UCServers' logouts through the shared revocation store
    await wait_for(refused, timeout=5)
    alice = await secured.directory.SearchUsers(search, metadata=secured.auth("alice"))
    assert [u.username for u in alice.users] == ["alice"]  # other sessions are unaffected
