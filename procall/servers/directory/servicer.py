"""The gRPC ``DirectoryService``: decode the request, call the domain, encode the answer.

Who may call each method is the policy enforcer's (``runtime/policy.py``): reads
need a session or a UCServer/Lookup, ``Authenticate`` a UCServer, writes an
administrator's session or the local operator. What depends on the request is
decided here: users see the phone book (names, numbers, home server, department,
groups), not account state (administrator, disabled, times) or the backend's
connection text; a user may set only their own password, with the current one, and
change only their own display name and phone number. An administrator's write of a
user or group that another administrator holds the edit lease of is refused
(``leased.LeaseCheck``).
Errors are domain errors, mapped to gRPC statuses by the shared interceptor.
Passwords are passed through, never logged.
"""

from __future__ import annotations

from typing import Any

import grpc

from procall.api.directory.v1 import directory_pb2 as pb
from procall.api.directory.v1 import directory_service_pb2 as svc
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.directory import (
    BackendKind,
    Delegation,
    Delegations,
    DelegationScope,
    Directory,
    Group,
    HomeServerAssignment,
    NewGroup,
    NewPickupGroup,
    NewUser,
    PickupGroup,
    SearchField,
    User,
    user_etag,
)
from procall.errors import PermissionDenied
from procall.leases import LeaseGuard
from procall.servers.codecs.time import timestamp_of
from procall.servers.directory.leased import LeaseCheck
from procall.servers.runtime.auth import current_claims, current_claims_or_none, current_service
from procall.servers.runtime.limits import source_of
from procall.servers.runtime.policy import Roles

__all__ = ["SELF_SERVICE_FIELDS", "DirectoryServicer", "phone_book_entry", "user_to_pb"]

#: The fields of their own entry users may change themselves (UpdateUser's mask paths).
SELF_SERVICE_FIELDS = frozenset({"display_name", "phone_number"})

Context = grpc.aio.ServicerContext[Any, Any]

_SCOPES_TO_PB = {
    DelegationScope.PRESENCE_SET: pb.DELEGATION_SCOPE_PRESENCE_SET,
    DelegationScope.CALLS_FORWARD: pb.DELEGATION_SCOPE_CALLS_FORWARD,
    DelegationScope.CALLS_PICKUP: pb.DELEGATION_SCOPE_CALLS_PICKUP,
}
_SCOPES_FROM_PB = {value: scope for scope, value in _SCOPES_TO_PB.items()}
_FIELDS_FROM_PB = {
    svc.SEARCH_FIELD_UNSPECIFIED: SearchField.ALL,
    svc.SEARCH_FIELD_NAME: SearchField.NAME,
    svc.SEARCH_FIELD_MAIL: SearchField.MAIL,
    svc.SEARCH_FIELD_PHONE_NUMBER: SearchField.PHONE_NUMBER,
    svc.SEARCH_FIELD_DEPARTMENT: SearchField.DEPARTMENT,
}
_KINDS_TO_PB = {BackendKind.SQL: pb.BACKEND_KIND_SQL, BackendKind.LDAP: pb.BACKEND_KIND_LDAP}


def user_to_pb(user: User) -> pb.User:
    """The protobuf ``User`` of a domain user."""
    return pb.User(
        user_id=user.user_id,
        username=user.username,
        display_name=user.display_name,
        mail=user.mail,
        phone_number=user.phone_number,
        department=user.department,
        home_server_id=user.home_server_id,
        group_ids=list(user.group_ids),
        admin=user.admin,
        disabled=user.disabled,
        principal_name=user.principal_name,
        create_time=timestamp_of(user.create_time),
        update_time=timestamp_of(user.update_time),
        etag=user_etag(user),
    )


def phone_book_entry(user: User) -> pb.User:
    """What any user may see of another: the phone book, no account state."""
    return pb.User(
        user_id=user.user_id,
        username=user.username,
        display_name=user.display_name,
        mail=user.mail,
        phone_number=user.phone_number,
        department=user.department,
        home_server_id=user.home_server_id,
        group_ids=list(user.group_ids),
        principal_name=user.principal_name,
    )


def _administers() -> bool:
    """Whether the caller is an administrator's session or the local operator."""
    service = current_service()
    if service is not None and service.role == Roles.OPERATOR:
        return True
    claims = current_claims_or_none()
    return claims is not None and claims.admin


def _sees_accounts() -> bool:
    """Whether the caller sees account state: administrators and procall servers."""
    return current_service() is not None or _administers()


def _entry(user: User) -> pb.User:
    return user_to_pb(user) if _sees_accounts() else phone_book_entry(user)


def _user_fields(message: pb.User) -> NewUser:
    return NewUser(
        username=message.username,
        display_name=message.display_name,
        mail=message.mail,
        phone_number=message.phone_number,
        department=message.department,
        home_server_id=message.home_server_id,
        group_ids=tuple(message.group_ids),
        admin=message.admin,
        disabled=message.disabled,
        principal_name=message.principal_name,
    )


def _group_to_pb(group: Group) -> pb.Group:
    return pb.Group(
        group_id=group.group_id,
        name=group.name,
        description=group.description,
        member_count=group.member_count,
    )


def _delegation_to_pb(delegation: Delegation) -> pb.Delegation:
    return pb.Delegation(
        delegation_id=delegation.delegation_id,
        principal_user_id=delegation.principal_user_id,
        delegate_user_id=delegation.delegate_user_id,
        scopes=[_SCOPES_TO_PB[scope] for scope in delegation.scopes],
        create_time=timestamp_of(delegation.create_time),
    )


def _pickup_to_pb(group: PickupGroup) -> pb.PickupGroup:
    return pb.PickupGroup(
        pickup_group_id=group.pickup_group_id,
        name=group.name,
        member_user_ids=list(group.member_user_ids),
    )


class DirectoryServicer(directory_grpc.DirectoryServiceServicer):
    """Serves ``procall.api.directory.v1.DirectoryService`` from the domain use-cases."""

    def __init__(
        self, directory: Directory, delegations: Delegations, leases: LeaseGuard | None = None
    ) -> None:
        self._directory = directory
        self._delegations = delegations
        self._leased = LeaseCheck(leases)

    # -- authentication and info ----------------------------------------------------------

    async def Authenticate(
        self, request: svc.AuthenticateRequest, context: Context
    ) -> svc.AuthenticateResponse:
        """Check a login name and password (throttled per account and source)."""
        # only UCServers may call Authenticate (the policy table), so the source they
        # pass on is the client's; without one, the caller itself is the source
        source = request.source or source_of(context.peer() or "")
        user = await self._directory.authenticate(request.username, request.password, source)
        return svc.AuthenticateResponse(user=user_to_pb(user))

    async def GetDirectoryInfo(
        self, request: svc.GetDirectoryInfoRequest, context: Context
    ) -> svc.GetDirectoryInfoResponse:
        """Describe the backend."""
        info = self._directory.info
        return svc.GetDirectoryInfoResponse(
            backend_kind=_KINDS_TO_PB[info.kind],
            writable=info.writable,
            # names the database or LDAP server: for administrators only
            description=info.description if _administers() else "",
        )

    # -- users ----------------------------------------------------------------------------

    async def GetUser(self, request: svc.GetUserRequest, context: Context) -> svc.GetUserResponse:
        """One user by id or username."""
        user = await self._directory.get_user(request.user_id, request.username)
        return svc.GetUserResponse(user=_entry(user))

    async def ListUsers(
        self, request: svc.ListUsersRequest, context: Context
    ) -> svc.ListUsersResponse:
        """A page of users."""
        page = await self._directory.list_users(
            request.page_size, request.page_token, request.home_server_id
        )
        return svc.ListUsersResponse(
            users=[_entry(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def SearchUsers(
        self, request: svc.SearchUsersRequest, context: Context
    ) -> svc.SearchUsersResponse:
        """A page of users matching a text."""
        field = _FIELDS_FROM_PB.get(request.field, SearchField.ALL)
        page = await self._directory.search_users(
            request.query, field, request.page_size, request.page_token
        )
        return svc.SearchUsersResponse(
            users=[_entry(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def CreateUser(
        self, request: svc.CreateUserRequest, context: Context
    ) -> svc.CreateUserResponse:
        """Create a user."""
        user = await self._directory.create_user(_user_fields(request.user), request.password)
        return svc.CreateUserResponse(user=user_to_pb(user))

    async def UpdateUser(
        self, request: svc.UpdateUserRequest, context: Context
    ) -> svc.UpdateUserResponse:
        """Change the masked fields of a user: any for administrators; users change only
        their own display name and phone number."""
        if not _administers():
            paths = set(request.update_mask.paths)
            own = request.user.user_id and request.user.user_id == current_claims().user_id
            if not own or not paths or not paths <= SELF_SERVICE_FIELDS:
                raise PermissionDenied(
                    "users may change only their own "
                    + " and ".join(sorted(SELF_SERVICE_FIELDS))
                    + " (name them in update_mask)"
                )
        else:
            await self._leased.user(request.user.user_id)
        user = await self._directory.update_user(
            request.user.user_id,
            _user_fields(request.user),
            list(request.update_mask.paths),
            request.user.etag,
        )
        return svc.UpdateUserResponse(user=user_to_pb(user))

    async def DeleteUser(
        self, request: svc.DeleteUserRequest, context: Context
    ) -> svc.DeleteUserResponse:
        """Delete a user."""
        await self._leased.user(request.user_id)
        await self._directory.delete_user(request.user_id)
        return svc.DeleteUserResponse()

    async def SetPassword(
        self, request: svc.SetPasswordRequest, context: Context
    ) -> svc.SetPasswordResponse:
        """Replace a user's password: any user's for administrators, else one's own."""
        if _administers():
            await self._leased.user(request.user_id)
            await self._directory.set_password(request.user_id, request.password)
        elif request.user_id and request.user_id == current_claims().user_id:
            await self._directory.change_own_password(
                request.user_id, request.old_password, request.password
            )
        else:
            raise PermissionDenied("you may set only your own password")
        return svc.SetPasswordResponse()

    async def SetHomeServer(
        self, request: svc.SetHomeServerRequest, context: Context
    ) -> svc.SetHomeServerResponse:
        """Home one user."""
        user = await self._directory.set_home_server(request.user_id, request.home_server_id)
        return svc.SetHomeServerResponse(user=user_to_pb(user))

    async def BatchSetHomeServers(
        self, request: svc.BatchSetHomeServersRequest, context: Context
    ) -> svc.BatchSetHomeServersResponse:
        """Home many users, all or nothing."""
        count = await self._directory.batch_set_home_servers(
            [HomeServerAssignment(a.user_id, a.home_server_id) for a in request.assignments]
        )
        return svc.BatchSetHomeServersResponse(updated_count=count)

    # -- groups ---------------------------------------------------------------------------

    async def ListGroups(
        self, request: svc.ListGroupsRequest, context: Context
    ) -> svc.ListGroupsResponse:
        """A page of groups."""
        page = await self._directory.list_groups(request.page_size, request.page_token)
        return svc.ListGroupsResponse(
            groups=[_group_to_pb(g) for g in page.items], next_page_token=page.next_page_token
        )

    async def CreateGroup(
        self, request: svc.CreateGroupRequest, context: Context
    ) -> svc.CreateGroupResponse:
        """Create a group."""
        group = await self._directory.create_group(
            NewGroup(request.group.name, request.group.description)
        )
        return svc.CreateGroupResponse(group=_group_to_pb(group))

    async def DeleteGroup(
        self, request: svc.DeleteGroupRequest, context: Context
    ) -> svc.DeleteGroupResponse:
        """Delete a group."""
        await self._leased.group(request.group_id)
        await self._directory.delete_group(request.group_id)
        return svc.DeleteGroupResponse()

    async def ModifyGroupMembers(
        self, request: svc.ModifyGroupMembersRequest, context: Context
    ) -> svc.ModifyGroupMembersResponse:
        """Add and remove members."""
        await self._leased.group(request.group_id)
        group = await self._directory.modify_group_members(
            request.group_id, list(request.add_user_ids), list(request.remove_user_ids)
        )
        return svc.ModifyGroupMembersResponse(group=_group_to_pb(group))

    async def ListGroupMembers(
        self, request: svc.ListGroupMembersRequest, context: Context
    ) -> svc.ListGroupMembersResponse:
        """A page of a group's members."""
        page = await self._directory.list_group_members(
            request.group_id, request.page_size, request.page_token
        )
        return svc.ListGroupMembersResponse(
            users=[_entry(u) for u in page.items], next_page_token=page.next_page_token
        )

    # -- delegations and pick-up groups ---------------------------------------------------

    async def ListDelegations(
        self, request: svc.ListDelegationsRequest, context: Context
    ) -> svc.ListDelegationsResponse:
        """Delegations of a user (or all)."""
        found = await self._delegations.list_delegations(request.user_id)
        return svc.ListDelegationsResponse(delegations=[_delegation_to_pb(d) for d in found])

    async def CreateDelegation(
        self, request: svc.CreateDelegationRequest, context: Context
    ) -> svc.CreateDelegationResponse:
        """Grant a delegation."""
        given = request.delegation
        delegation = await self._delegations.create_delegation(
            given.principal_user_id,
            given.delegate_user_id,
            [_SCOPES_FROM_PB.get(scope) for scope in given.scopes],
        )
        return svc.CreateDelegationResponse(delegation=_delegation_to_pb(delegation))

    async def DeleteDelegation(
        self, request: svc.DeleteDelegationRequest, context: Context
    ) -> svc.DeleteDelegationResponse:
        """Revoke a delegation."""
        await self._delegations.delete_delegation(request.delegation_id)
        return svc.DeleteDelegationResponse()

    async def CheckDelegation(
        self, request: svc.CheckDelegationRequest, context: Context
    ) -> svc.CheckDelegationResponse:
        """Whether an actor may act for a principal in a scope."""
        allowed = await self._delegations.check(
            request.actor_user_id, request.principal_user_id, _SCOPES_FROM_PB.get(request.scope)
        )
        return svc.CheckDelegationResponse(allowed=allowed)

    async def ListPickupGroups(
        self, request: svc.ListPickupGroupsRequest, context: Context
    ) -> svc.ListPickupGroupsResponse:
        """Pick-up groups of a user (or all)."""
        found = await self._delegations.list_pickup_groups(request.user_id)
        return svc.ListPickupGroupsResponse(pickup_groups=[_pickup_to_pb(g) for g in found])

    async def CreatePickupGroup(
        self, request: svc.CreatePickupGroupRequest, context: Context
    ) -> svc.CreatePickupGroupResponse:
        """Create a pick-up group."""
        given = request.pickup_group
        group = await self._delegations.create_pickup_group(
            NewPickupGroup(given.name, tuple(given.member_user_ids))
        )
        return svc.CreatePickupGroupResponse(pickup_group=_pickup_to_pb(group))

    async def UpdatePickupGroup(
        self, request: svc.UpdatePickupGroupRequest, context: Context
    ) -> svc.UpdatePickupGroupResponse:
        """Replace a pick-up group's name and members."""
        given = request.pickup_group
        group = await self._delegations.update_pickup_group(
            given.pickup_group_id, NewPickupGroup(given.name, tuple(given.member_user_ids))
        )
        return svc.UpdatePickupGroupResponse(pickup_group=_pickup_to_pb(group))

    async def DeletePickupGroup(
        self, request: svc.DeletePickupGroupRequest, context: Context
    ) -> svc.DeletePickupGroupResponse:
        """Delete a pick-up group."""
        await self._delegations.delete_pickup_group(request.pickup_group_id)
        return svc.DeletePickupGroupResponse()
