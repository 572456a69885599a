"""Who may call what: one policy per RPC method of every procall server, in one table.

A method is either *public* (Login, health, reflection), or callable by the
holders of a user's session, of an administrator's session, and/or by procall
servers whose proven role (``ServiceIdentity.role``) is listed. A caller meets a
policy when it meets any one of its parts: a UCServer acting for an
administrator forwards the administrator's token and passes as that session.

Nothing is open by default: ``POLICIES`` must name every method every role
serves (a test walks the generated descriptors), and the enforcer refuses a
method it finds no policy for. Finer rules that depend on the request (alice may
change her own password, not bob's) stay in the use-cases and servicers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "ADMIN",
    "POLICIES",
    "PUBLIC",
    "USER",
    "Policy",
    "Roles",
    "SessionRule",
    "services",
]


class SessionRule(enum.Enum):
    """Which session tokens a policy accepts."""

    #: No session token passes this policy (services only, or public).
    NONE = "none"
    #: Any user's valid session token.
    USER = "user"
    #: Only an administrator's session token.
    ADMIN = "admin"


class Roles:
    """The service roles procall servers (and the local operator) prove."""

    DIRECTORY = "directory"
    LOOKUP = "lookup"
    UCSERVER = "ucserver"
    MEDIA = "media"
    #: The machine's operator: ``procall up`` seeding, ``procall admin --data-dir``.
    OPERATOR = "operator"


@dataclass(frozen=True)
class Policy:
    """The callers one RPC method admits."""

    public: bool = False
    session: SessionRule = SessionRule.NONE
    #: Service roles admitted without a session token.
    roles: frozenset[str] = frozenset()

    def __or__(self, other: Policy) -> Policy:
        """A policy admitting the callers of either."""
        order = [SessionRule.NONE, SessionRule.ADMIN, SessionRule.USER]
        session = max(self.session, other.session, key=order.index)
        return Policy(self.public or other.public, session, self.roles | other.roles)

    def describe(self) -> str:
        """A short text for error messages and docs (``"a user's session or ucserver"``)."""
        if self.public:
            return "anyone"
        parts = []
        if self.session is SessionRule.USER:
            parts.append("a user's session")
        elif self.session is SessionRule.ADMIN:
            parts.append("an administrator's session")
        if self.roles:
            parts.append("the procall service roles " + ", ".join(sorted(self.roles)))
        return " or ".join(parts) or "nobody"


#: Anyone, without credentials.
PUBLIC = Policy(public=True)
#: Any user's session.
USER = Policy(session=SessionRule.USER)
#: An administrator's session.
ADMIN = Policy(session=SessionRule.ADMIN)


def services(*roles: str) -> Policy:
    """Procall servers of these roles (proven by certificate or plain-mode proof)."""
    return Policy(roles=frozenset(roles))


def _table(entries: Iterable[tuple[str, Mapping[str, Policy]]]) -> dict[str, Policy]:
    table: dict[str, Policy] = {}
    for service, methods in entries:
        for method, policy in methods.items():
            table[f"/{service}/{method}"] = policy
    return table


def _all(policy: Policy, *methods: str) -> dict[str, Policy]:
    return dict.fromkeys(methods, policy)


_R = Roles
#: Reads of the phone book: any session, the UCServers and Lookups, the operator.
_DIRECTORY_READ = USER | services(_R.UCSERVER, _R.LOOKUP, _R.OPERATOR)
#: Changes to the directory: administrators (directly or through a UCServer), the operator.
_DIRECTORY_WRITE = ADMIN | services(_R.OPERATOR)

#: Full method name (``/package.Service/Method``) -> its policy. Deny by default: a
#: method missing here is refused (and fails ``tests/unit/servers/test_policy_table.py``).
POLICIES: dict[str, Policy] = _table(
    [
        # -- every server -------------------------------------------------------------------
        ("grpc.health.v1.Health", _all(PUBLIC, "Check", "Watch", "List")),
        ("grpc.reflection.v1alpha.ServerReflection", {"ServerReflectionInfo": PUBLIC}),
        ("grpc.reflection.v1.ServerReflection", {"ServerReflectionInfo": PUBLIC}),
        # -- UCServer: client-facing --------------------------------------------------------
        (
            "procall.api.session.v1.SessionService",
            {"Login": PUBLIC, **_all(USER, "Connect", "RefreshToken", "Logout")},
        ),
        (
            "procall.api.presence.v1.PresenceService",
            _all(
                USER,
                "GetPresence",
                "BatchGetPresence",
                "SetPresence",
                "ListContacts",
                "AddContacts",
                "RemoveContacts",
            ),
        ),
        (
            "procall.api.chat.v1.ChatService",
            _all(
                USER,
                "CreateConversation",
                "GetConversation",
                "ListConversations",
                "UpdateConversation",
                "AddMembers",
                "RemoveMembers",
                "LeaveConversation",
                "SendMessage",
                "ListMessages",
                "MarkRead",
                "SetTyping",
                "SearchMessages",
            ),
        ),
        (
            "procall.api.journal.v1.JournalService",
            _all(USER, "ListJournalEntries", "AddJournalEntry", "DeleteJournalEntry"),
        ),
        (
            "procall.api.call.v1.CallService",
            _all(
                USER,
                "PlaceCall",
                "AnswerCall",
                "DeclineCall",
                "HangUp",
                "PickUpCall",
                "NegotiateMedia",
                "GetCall",
                "ListActiveCalls",
                "GetForwarding",
                "SetForwarding",
            ),
        ),
        (
            "procall.api.admin.v1.AdminService",
            _all(
                ADMIN,
                "ListConfigProperties",
                "GetConfigProperty",
                "SetConfigProperty",
                "AcquireEditLease",
                "RenewEditLease",
                "ReleaseEditLease",
                "ListEditLeases",
                "ListSessions",
                "ListServers",
                "GetLicensePool",
                "MoveUser",
                "DrainServer",
                "Rebalance",
                "GetMoveOperation",
                "ListAuditEvents",
                "GetClientPolicy",
                "SetClientPolicy",
                "ListClientPolicies",
            ),
        ),
        # -- UCServer: mesh -----------------------------------------------------------------
        (
            "procall.mesh.peer.v1.PeerService",
            _all(services(_R.UCSERVER), "Exchange", "MoveUsers", "AcceptSessions", "SetDraining"),
        ),
        # -- Directory ----------------------------------------------------------------------
        (
            "procall.api.directory.v1.DirectoryService",
            {
                # a password oracle: only the UCServers log users in
                "Authenticate": services(_R.UCSERVER),
                **_all(
                    _DIRECTORY_READ,
                    "GetDirectoryInfo",
                    "GetUser",
                    "ListUsers",
                    "SearchUsers",
                    "ListGroups",
                    "ListGroupMembers",
                    "ListDelegations",
                    "CheckDelegation",
                    "ListPickupGroups",
                ),
                # users may change their own password (with the old one) and their own name
                # and number: checked inside
                "SetPassword": USER | services(_R.OPERATOR),
                # a UCServer moving users (an admin's move, a drain, a rebalance) or re-homing
                # the user of a dead server at login writes the assignment itself
                **_all(
                    _DIRECTORY_WRITE | services(_R.UCSERVER),
                    "SetHomeServer",
                    "BatchSetHomeServers",
                ),
                "UpdateUser": USER | services(_R.OPERATOR),
                **_all(
                    _DIRECTORY_WRITE,
                    "CreateUser",
                    "DeleteUser",
                    "CreateGroup",
                    "DeleteGroup",
                    "ModifyGroupMembers",
                    "CreateDelegation",
                    "DeleteDelegation",
                    "CreatePickupGroup",
                    "UpdatePickupGroup",
                    "DeletePickupGroup",
                ),
            },
        ),
        # -- Lookup -------------------------------------------------------------------------
        (
            "procall.mesh.lookup.v1.LookupService",
            {
                # the Lookup servicer also checks that a server registers only itself
                **_all(services(_R.UCSERVER, _R.MEDIA), "Heartbeat", "Deregister"),
                "ListServers": services(_R.UCSERVER, _R.MEDIA, _R.LOOKUP, _R.OPERATOR),
                "WatchTopology": services(_R.UCSERVER, _R.MEDIA, _R.LOOKUP, _R.OPERATOR),
                "ResolveHome": services(_R.UCSERVER, _R.OPERATOR),
                **_all(
                    services(_R.UCSERVER, _R.OPERATOR),
                    "AllocateMediaServer",
                    "ReleaseMediaServer",
                ),
            },
        ),
        # -- MediaServer --------------------------------------------------------------------
        (
            "procall.mesh.media.v1.MediaService",
            _all(
                services(_R.UCSERVER),
                "CreateLeg",
                "DeleteLeg",
                "GetBridge",
                "DeleteBridge",
                "GetLoad",
            ),
        ),
    ]
)
