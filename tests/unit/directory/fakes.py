"""In-memory stand-ins for the Directory's ports (the seam under the use-cases)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from procall.directory import (
    Account,
    Delegation,
    DelegationScope,
    Group,
    HomeServerAssignment,
    NewDelegation,
    NewPickupGroup,
    PickupGroup,
    User,
    UserQuery,
)
from procall.directory.validation import normalize_key
from procall.errors import AlreadyExists, NotFound
from procall.paging import Cursor


class MemoryUsers:
    """``UserReader`` + ``Authenticator`` + ``HomeServerStore`` over a dict (passwords in
    clear); tests/integration/ports/test_user_directory.py runs one suite against this and
    the SQL backend. Listings and groups are only as much as the unit tests need."""

    def __init__(self, users: Sequence[User], passwords: dict[str, str]) -> None:
        self.users = {u.user_id: u for u in users}
        self.passwords = passwords
        self.password_checks = 0

    async def get_user(self, user_id: str) -> User | None:
        return self.users.get(user_id)

    async def get_user_by_username(self, username: str) -> User | None:
        key = normalize_key(username)
        return next((u for u in self.users.values() if normalize_key(u.username) == key), None)

    async def get_users(self, user_ids: Sequence[str]) -> dict[str, User]:
        return {i: self.users[i] for i in user_ids if i in self.users}

    async def list_users(
        self, query: UserQuery, cursor: Cursor | None, limit: int
    ) -> tuple[list[User], Cursor | None]:
        ordered = sorted(self.users.values(), key=lambda u: u.username)
        if query.text:
            ordered = [u for u in ordered if query.text.lower() in u.display_name.lower()]
        if cursor:
            ordered = [u for u in ordered if u.username > str(cursor[0])]
        page = ordered[:limit]
        return page, (page[-1].username,) if len(ordered) > limit else None

    async def get_group(self, group_id: str) -> Group | None:
        return Group(group_id, group_id) if group_id == "g1" else None

    async def list_groups(
        self, cursor: Cursor | None, limit: int
    ) -> tuple[list[Group], Cursor | None]:
        return [Group("g1", "g1")], None

    async def find_account(self, login: str) -> Account | None:
        key = normalize_key(login)
        user = await self.get_user_by_username(login) or next(
            (
                u
                for u in self.users.values()
                if u.principal_name and normalize_key(u.principal_name) == key
            ),
            None,
        )
        return Account(user, user.user_id) if user else None

    async def check_password(self, account: Account | None, password: str) -> bool:
        self.password_checks += 1
        return account is not None and self.passwords.get(account.credential) == password

    async def set_home_servers(self, assignments: Sequence[HomeServerAssignment]) -> int:
        for item in assignments:
            user = self.users.get(item.user_id)
            if user is not None:  # unknown users are left out, as in SQL
                self.users[item.user_id] = replace(user, home_server_id=item.home_server_id)
        return len(assignments)


class MemoryDelegations:
    """``DelegationStore`` over lists, as ``SqlDelegationStore`` keeps them:
    tests/integration/ports/test_delegation_store.py runs one suite against both."""

    def __init__(self) -> None:
        self.delegations: list[Delegation] = []
        self.pickups: dict[str, PickupGroup] = {}
        self._ids = 0

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    async def list_delegations(self, user_id: str) -> list[Delegation]:
        return [
            d
            for d in self.delegations
            if not user_id or user_id in (d.principal_user_id, d.delegate_user_id)
        ]

    async def create_delegation(self, delegation: NewDelegation) -> Delegation:
        for d in self.delegations:
            if (d.principal_user_id, d.delegate_user_id) == (
                delegation.principal_user_id,
                delegation.delegate_user_id,
            ):
                raise AlreadyExists("this delegate already has a delegation from this principal")
        created = Delegation(
            self._next_id("d"),
            delegation.principal_user_id,
            delegation.delegate_user_id,
            tuple(sorted(set(delegation.scopes), key=list(DelegationScope).index)),
            time.time(),
        )
        self.delegations.append(created)
        return created

    async def delete_delegation(self, delegation_id: str) -> None:
        before = len(self.delegations)
        self.delegations = [d for d in self.delegations if d.delegation_id != delegation_id]
        if len(self.delegations) == before:
            raise NotFound("delegation not found")

    async def delegated_scopes(self, actor: str, principal: str) -> frozenset[DelegationScope]:
        return frozenset(
            s
            for d in self.delegations
            if (d.delegate_user_id, d.principal_user_id) == (actor, principal)
            for s in d.scopes
        )

    async def list_pickup_groups(self, user_id: str) -> list[PickupGroup]:
        return sorted(
            (g for g in self.pickups.values() if not user_id or user_id in g.member_user_ids),
            key=lambda g: normalize_key(g.name),
        )

    def _check_name(self, name: str, exclude_id: str | None) -> None:
        key = normalize_key(name)
        for group in self.pickups.values():
            if group.pickup_group_id != exclude_id and normalize_key(group.name) == key:
                raise AlreadyExists("a pick-up group with this name already exists")

    async def create_pickup_group(self, group: NewPickupGroup) -> PickupGroup:
        self._check_name(group.name, None)
        created = PickupGroup(
            self._next_id("p"), group.name, tuple(sorted(dict.fromkeys(group.member_user_ids)))
        )
        self.pickups[created.pickup_group_id] = created
        return created

    async def replace_pickup_group(
        self, pickup_group_id: str, group: NewPickupGroup
    ) -> PickupGroup:
        if pickup_group_id not in self.pickups:
            raise NotFound("pick-up group not found")
        self._check_name(group.name, pickup_group_id)
        replaced = PickupGroup(
            pickup_group_id, group.name, tuple(sorted(dict.fromkeys(group.member_user_ids)))
        )
        self.pickups[pickup_group_id] = replaced
        return replaced

    async def delete_pickup_group(self, pickup_group_id: str) -> None:
        if self.pickups.pop(pickup_group_id, None) is None:
            raise NotFound("pick-up group not found")

    async def share_pickup_group(self, user_a: str, user_b: str) -> bool:
        return any(
            user_a in g.member_user_ids and user_b in g.member_user_ids
            for g in self.pickups.values()
        )
