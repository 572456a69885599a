"""The Directory's domain objects: users, groups, delegations, pick-up groups.

Plain frozen dataclasses, free of any transport or storage type. Optional text
fields use ``""`` for "not set" (as the protobuf contract does); stores map that
to ``NULL`` where it matters (unique-when-set columns). Times are
:data:`procall.clock.UnixTime` (float Unix seconds), ``None`` when the backend
keeps none (LDAP).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from procall.clock import UnixTime

__all__ = [
    "USER_MUTABLE_FIELDS",
    "Account",
    "BackendInfo",
    "BackendKind",
    "Delegation",
    "DelegationScope",
    "Group",
    "HomeServerAssignment",
    "NewDelegation",
    "NewGroup",
    "NewPickupGroup",
    "NewUser",
    "Page",
    "PickupGroup",
    "SearchField",
    "User",
    "UserChanges",
    "etag_of_time",
    "user_etag",
]

T = TypeVar("T")


class BackendKind(enum.Enum):
    """Where the Directory keeps its users."""

    SQL = "sql"
    LDAP = "ldap"


@dataclass(frozen=True)
class BackendInfo:
    """What ``GetDirectoryInfo`` tells: the backend kind, writability, a secret-free description."""

    kind: BackendKind
    writable: bool
    description: str


@dataclass(frozen=True)
class User:
    """One person known to the directory."""

    user_id: str
    username: str
    display_name: str
    mail: str = ""
    phone_number: str = ""
    department: str = ""
    home_server_id: str = ""
    group_ids: tuple[str, ...] = ()
    admin: bool = False
    disabled: bool = False
    principal_name: str = ""
    create_time: UnixTime | None = None
    update_time: UnixTime | None = None


@dataclass(frozen=True)
class NewUser:
    """The fields of a user to create (already validated by the use-case)."""

    username: str
    display_name: str
    mail: str = ""
    phone_number: str = ""
    department: str = ""
    home_server_id: str = ""
    group_ids: tuple[str, ...] = ()
    admin: bool = False
    disabled: bool = False
    principal_name: str = ""


#: Fields of a user that ``UpdateUser`` may change (the update-mask paths).
USER_MUTABLE_FIELDS: tuple[str, ...] = (
    "username",
    "display_name",
    "mail",
    "phone_number",
    "department",
    "home_server_id",
    "group_ids",
    "admin",
    "disabled",
    "principal_name",
)


@dataclass(frozen=True)
class UserChanges:
    """New values for some user fields: ``values`` maps a name of
    ``USER_MUTABLE_FIELDS`` to its new value (``str``, ``bool`` or a tuple of group ids)."""

    values: dict[str, str | bool | tuple[str, ...]] = field(default_factory=dict)
    #: The ``user_etag`` the change was based on; a user changed since: ABORTED (empty: no
    #: check).
    expected_etag: str = ""


def user_etag(user: User) -> str:
    """The user's etag (AIP-154): its last update time, in microseconds."""
    return etag_of_time(user.update_time)


def etag_of_time(update_time: UnixTime | None) -> str:
    """The etag of a record last updated at ``update_time``."""
    return f'"{round((update_time or 0.0) * 1_000_000):x}"'


@dataclass(frozen=True)
class Account:
    """A user found for a login name, with what the backend needs to check a password.

    ``credential`` is backend-private: the password hash (SQL, may be empty when the user
    has no password) or the entry's DN (LDAP, bound with the password).
    """

    user: User
    credential: str


@dataclass(frozen=True)
class Group:
    """A named set of users."""

    group_id: str
    name: str
    description: str = ""
    member_count: int = 0


@dataclass(frozen=True)
class NewGroup:
    """A group to create."""

    name: str
    description: str = ""


class DelegationScope(enum.Enum):
    """One kind of action a delegate may perform for another user.

    Values are the stable names stored in the database, so adding a scope needs no
    schema change.
    """

    PRESENCE_SET = "presence.set"
    CALLS_FORWARD = "calls.forward"
    CALLS_PICKUP = "calls.pickup"


@dataclass(frozen=True)
class Delegation:
    """``delegate_user_id`` may act for ``principal_user_id`` in ``scopes``."""

    delegation_id: str
    principal_user_id: str
    delegate_user_id: str
    scopes: tuple[DelegationScope, ...]
    create_time: UnixTime | None = None


@dataclass(frozen=True)
class NewDelegation:
    """A delegation to grant."""

    principal_user_id: str
    delegate_user_id: str
    scopes: tuple[DelegationScope, ...]


@dataclass(frozen=True)
class PickupGroup:
    """Users any of whom may pick up a call ringing for another member."""

    pickup_group_id: str
    name: str
    member_user_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewPickupGroup:
    """A pick-up group to create (or the new state of one to replace)."""

    name: str
    member_user_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class HomeServerAssignment:
    """Home ``user_id`` on ``home_server_id`` (``""`` removes the assignment)."""

    user_id: str
    home_server_id: str


class SearchField(enum.Enum):
    """Which user fields a search looks at."""

    ALL = "all"
    NAME = "name"
    MAIL = "mail"
    PHONE_NUMBER = "phone_number"
    DEPARTMENT = "department"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and the opaque token of the next one (``""`` on the last page)."""

    items: Sequence[T]
    next_page_token: str = ""
