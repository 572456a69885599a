"""The small interfaces the Directory's use-cases need from a backend.

Implementations live in ``procall.storage.sql`` (SQLite, PostgreSQL, SQL Server) and
``procall.storage.ldap`` (Active Directory / OpenLDAP). Stores raise the domain errors
of ``procall.errors``: ``NotFound`` for a missing resource they were asked to change,
``AlreadyExists`` for a unique key taken, ``Unavailable.backend(...)`` when the backend
does not answer. Cursors are the store's own (see ``procall.paging``): a store
must raise ``bad_page_token()`` for a cursor it cannot use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from procall.directory.models import (
    Account,
    Delegation,
    DelegationScope,
    Group,
    HomeServerAssignment,
    NewDelegation,
    NewGroup,
    NewPickupGroup,
    NewUser,
    PickupGroup,
    SearchField,
    User,
    UserChanges,
)
from procall.paging import Cursor

__all__ = [
    "Authenticator",
    "CredentialStore",
    "DelegationStore",
    "HomeServerStore",
    "UserQuery",
    "UserReader",
    "UserWriter",
]


@dataclass(frozen=True)
class UserQuery:
    """Which users a listing returns; empty fields do not restrict.

    ``text`` is a literal substring (case-insensitive) looked for in ``field``; it
    has been checked with ``validation.is_searchable``. ``group_id`` restricts to the
    members of one group, ``home_server_id`` to the users homed on one UCServer.
    """

    text: str = ""
    field: SearchField = SearchField.ALL
    home_server_id: str = ""
    group_id: str = ""


class UserReader(Protocol):
    """Reading users and groups (every backend)."""

    async def get_user(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        ...

    async def get_user_by_username(self, username: str) -> User | None:
        """The user with this login name (case-insensitive), or ``None``."""
        ...

    async def get_users(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The users among ``user_ids`` that exist, by id."""
        ...

    async def list_users(
        self, query: UserQuery, cursor: Cursor | None, limit: int
    ) -> tuple[list[User], Cursor | None]:
        """Up to ``limit`` users after ``cursor`` in a stable order, and the next cursor."""
        ...

    async def get_group(self, group_id: str) -> Group | None:
        """The group with this id, or ``None``."""
        ...

    async def list_groups(
        self, cursor: Cursor | None, limit: int
    ) -> tuple[list[Group], Cursor | None]:
        """Up to ``limit`` groups after ``cursor`` in a stable order, and the next cursor."""
        ...


class Authenticator(Protocol):
    """Checking a login name and password against the backend."""

    async def find_account(self, login: str) -> Account | None:
        """The account whose username or principal name is ``login``, or ``None``."""
        ...

    async def check_password(self, account: Account | None, password: str) -> bool:
        """Whether ``password`` is the account's; for ``None`` spend the same time, say no."""
        ...


class CredentialStore(Protocol):
    """Stored password hashes (the SQL backend)."""

    async def find_credentials(self, login: str) -> Account | None:
        """The account for ``login`` with its password hash as ``credential`` (may be "")."""
        ...

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        """Swap the hash if it still is ``old_hash`` (a concurrent change wins)."""
        ...


class UserWriter(Protocol):
    """Changing users and groups (the SQL backend; LDAP is managed in AD)."""

    async def create_user(self, user: NewUser, password_hash: str) -> User:
        """Create a user (``password_hash`` "" for none); ``AlreadyExists`` on a taken key."""
        ...

    async def update_user(self, user_id: str, changes: UserChanges) -> User:
        """Apply ``changes``; ``NotFound`` / ``AlreadyExists`` as they apply."""
        ...

    async def delete_user(self, user_id: str) -> None:
        """Delete the user, its memberships, delegations and pick-up memberships."""
        ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Store a new password hash; ``NotFound`` for an unknown user."""
        ...

    async def create_group(self, group: NewGroup) -> Group:
        """Create a group; ``AlreadyExists`` when the name is taken."""
        ...

    async def delete_group(self, group_id: str) -> None:
        """Delete a group and its memberships; ``NotFound`` for an unknown group."""
        ...

    async def modify_group_members(
        self, group_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> Group:
        """Add and remove members; ``NotFound`` for an unknown group or added user."""
        ...


class HomeServerStore(Protocol):
    """Assigning users to their home UCServers (every backend)."""

    async def set_home_servers(self, assignments: Sequence[HomeServerAssignment]) -> int:
        """Apply all assignments in one transaction; returns how many users changed."""
        ...


class DelegationStore(Protocol):
    """Delegations and pick-up groups (always SQL, also next to LDAP)."""

    async def list_delegations(self, user_id: str) -> list[Delegation]:
        """Delegations where ``user_id`` is principal or delegate (all when "")."""
        ...

    async def create_delegation(self, delegation: NewDelegation) -> Delegation:
        """Grant; ``AlreadyExists`` when the pair already has a delegation."""
        ...

    async def delete_delegation(self, delegation_id: str) -> None:
        """Revoke; ``NotFound`` for an unknown id."""
        ...

    async def delegated_scopes(
        self, actor_user_id: str, principal_user_id: str
    ) -> frozenset[DelegationScope]:
        """The scopes in which the actor may act for the principal."""
        ...

    async def list_pickup_groups(self, user_id: str) -> list[PickupGroup]:
        """Pick-up groups ``user_id`` belongs to (all when "")."""
        ...

    async def create_pickup_group(self, group: NewPickupGroup) -> PickupGroup:
        """Create; ``AlreadyExists`` when the name is taken."""
        ...

    async def replace_pickup_group(
        self, pickup_group_id: str, group: NewPickupGroup
    ) -> PickupGroup:
        """Replace name and members; ``NotFound`` / ``AlreadyExists`` as they apply."""
        ...

    async def delete_pickup_group(self, pickup_group_id: str) -> None:
        """Delete; ``NotFound`` for an unknown id."""
        ...

    async def share_pickup_group(self, user_a: str, user_b: str) -> bool:
        """Whether both users are members of one pick-up group."""
        ...
