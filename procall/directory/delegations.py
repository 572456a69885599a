"""Delegations and call pick-up groups: who may act for whom.

The Directory stores and answers them; the UCServers enforce them (presence,
forwarding, pick-up). They always live in SQL, also when users come from Active
Directory (the LDAP backend's side database), and refer to users by id.

``check`` answers yes when the actor is the principal, when a delegation grants
the scope, or, for ``calls.pickup``, when both users share a pick-up group.
"""

from __future__ import annotations

from collections.abc import Sequence

from procall.directory.models import (
    Delegation,
    DelegationScope,
    NewDelegation,
    NewPickupGroup,
    PickupGroup,
)
from procall.directory.ports import DelegationStore, UserReader
from procall.directory.service import plausible_id
from procall.directory.validation import check_group_name
from procall.errors import InvalidArgument, NotFound

__all__ = ["MAX_PICKUP_MEMBERS", "Delegations"]

#: Most members one pick-up group may have.
MAX_PICKUP_MEMBERS = 1000


class Delegations:
    """Use-cases of delegations and pick-up groups."""

    def __init__(self, store: DelegationStore, users: UserReader) -> None:
        self._store = store
        self._users = users

    async def _require_users(self, field: str, user_ids: Sequence[str]) -> None:
        for index, user_id in enumerate(user_ids):
            if not plausible_id(user_id):
                raise InvalidArgument.field(f"{field}[{index}]", "is not a user id")
        found = await self._users.get_users(list(user_ids)) if user_ids else {}
        for user_id in user_ids:
            if user_id not in found:
                raise NotFound("user not found", metadata={"user_id": user_id})

    async def list_delegations(self, user_id: str = "") -> list[Delegation]:
        """Delegations where ``user_id`` is principal or delegate (all when empty)."""
        if user_id and not plausible_id(user_id):
            return []
        return await self._store.list_delegations(user_id)

    async def create_delegation(
        self, principal: str, delegate: str, scopes: Sequence[DelegationScope | None]
    ) -> Delegation:
        """Grant ``delegate`` the right to act for ``principal`` in ``scopes``."""
        if not principal:
            raise InvalidArgument.field("delegation.principal_user_id", "is required")
        if not delegate:
            raise InvalidArgument.field("delegation.delegate_user_id", "is required")
        if principal == delegate:
            raise InvalidArgument.field(
                "delegation.delegate_user_id", "must differ from the principal"
            )
        if not scopes:
            raise InvalidArgument.field("delegation.scopes", "at least one scope is required")
        checked: list[DelegationScope] = []
        for index, scope in enumerate(scopes):
            if scope is None:
                raise InvalidArgument.field(f"delegation.scopes[{index}]", "is not a known scope")
            if scope not in checked:
                checked.append(scope)
        if not plausible_id(principal):
            raise InvalidArgument.field("delegation.principal_user_id", "is not a user id")
        if not plausible_id(delegate):
            raise InvalidArgument.field("delegation.delegate_user_id", "is not a user id")
        await self._require_users("user_ids", [principal, delegate])
        return await self._store.create_delegation(
            NewDelegation(principal, delegate, tuple(checked))
        )

    async def delete_delegation(self, delegation_id: str) -> None:
        """Revoke a delegation."""
        if not delegation_id:
            raise InvalidArgument.field("delegation_id", "is required")
        if not plausible_id(delegation_id):
            raise NotFound("delegation not found")
        await self._store.delete_delegation(delegation_id)

    async def check(self, actor: str, principal: str, scope: DelegationScope | None) -> bool:
        """Whether ``actor`` may act for ``principal`` in ``scope``."""
        if not actor:
            raise InvalidArgument.field("actor_user_id", "is required")
        if not principal:
            raise InvalidArgument.field("principal_user_id", "is required")
        if scope is None:
            raise InvalidArgument.field("scope", "is not a known scope")
        if not (plausible_id(actor) and plausible_id(principal)):
            return False
        if actor == principal:
            return True
        if scope in await self._store.delegated_scopes(actor, principal):
            return True
        if scope is DelegationScope.CALLS_PICKUP:
            return await self._store.share_pickup_group(actor, principal)
        return False

    # -- pick-up groups -------------------------------------------------------------------

    async def _checked_group(self, group: NewPickupGroup) -> NewPickupGroup:
        name = check_group_name("pickup_group.name", group.name)
        members = tuple(dict.fromkeys(group.member_user_ids))
        if len(members) > MAX_PICKUP_MEMBERS:
            raise InvalidArgument.field(
                "pickup_group.member_user_ids", f"must hold at most {MAX_PICKUP_MEMBERS} users"
            )
        await self._require_users("pickup_group.member_user_ids", members)
        return NewPickupGroup(name, members)

    async def list_pickup_groups(self, user_id: str = "") -> list[PickupGroup]:
        """Pick-up groups ``user_id`` belongs to (all when empty)."""
        if user_id and not plausible_id(user_id):
            return []
        return await self._store.list_pickup_groups(user_id)

    async def create_pickup_group(self, group: NewPickupGroup) -> PickupGroup:
        """Create a pick-up group."""
        return await self._store.create_pickup_group(await self._checked_group(group))

    async def update_pickup_group(self, pickup_group_id: str, group: NewPickupGroup) -> PickupGroup:
        """Replace a pick-up group's name and members."""
        if not pickup_group_id:
            raise InvalidArgument.field("pickup_group.pickup_group_id", "is required")
        if not plausible_id(pickup_group_id):
            raise NotFound("pick-up group not found")
        return await self._store.replace_pickup_group(
            pickup_group_id, await self._checked_group(group)
        )

    async def delete_pickup_group(self, pickup_group_id: str) -> None:
        """Delete a pick-up group."""
        if not pickup_group_id:
            raise InvalidArgument.field("pickup_group_id", "is required")
        if not plausible_id(pickup_group_id):
            raise NotFound("pick-up group not found")
        await self._store.delete_pickup_group(pickup_group_id)
