"""The Directory's domain: users, groups, credentials, home servers, delegations.

No transport or storage code lives here: the use-cases (``Directory``,
``Delegations``) talk to backends through the small ports of
``procall.directory.ports``; ``procall.storage.sql`` and ``procall.storage.ldap``
implement them and ``procall.servers.directory.root`` wires everything to gRPC.
"""

from procall.directory.authentication import PasswordAuthenticator
from procall.directory.delegations import Delegations
from procall.directory.models import (
    USER_MUTABLE_FIELDS,
    Account,
    BackendInfo,
    BackendKind,
    Delegation,
    DelegationScope,
    Group,
    HomeServerAssignment,
    NewDelegation,
    NewGroup,
    NewPickupGroup,
    NewUser,
    Page,
    PickupGroup,
    SearchField,
    User,
    UserChanges,
    etag_of_time,
    user_etag,
)
from procall.directory.passwords import HashParameters, PasswordHasher, PasswordPolicy
from procall.directory.ports import (
    Authenticator,
    CredentialStore,
    DelegationStore,
    HomeServerStore,
    UserQuery,
    UserReader,
    UserWriter,
)
from procall.directory.service import Directory
from procall.directory.throttle import LoginThrottle

__all__ = [
    "USER_MUTABLE_FIELDS",
    "Account",
    "Authenticator",
    "BackendInfo",
    "BackendKind",
    "CredentialStore",
    "Delegation",
    "DelegationScope",
    "DelegationStore",
    "Delegations",
    "Directory",
    "Group",
    "HashParameters",
    "HomeServerAssignment",
    "HomeServerStore",
    "LoginThrottle",
    "NewDelegation",
    "NewGroup",
    "NewPickupGroup",
    "NewUser",
    "Page",
    "PasswordAuthenticator",
    "PasswordHasher",
    "PasswordPolicy",
    "PickupGroup",
    "SearchField",
    "User",
    "UserChanges",
    "UserQuery",
    "UserReader",
    "UserWriter",
    "etag_of_time",
    "user_etag",
]
