"""Presence: availability, note, telephony state and capabilities, and who watches whom.

Transport-free. ``PresenceManager`` (the use-case) keeps this server's users' presence in
the store behind ``PresenceStore``, tells watchers through ``PresenceNotifier`` and checks
rights through ``DelegationChecker``, ``ContactStore`` and ``UserDirectory``; ``policy``
holds the rules for what clients ask (update masks, whose capabilities count, contact-list
pages). ``procall.storage.redis.presence`` and ``procall.storage.sql.contacts`` implement
the stores and ``procall.servers.ucserver.presence`` wires them to the peer mesh.
"""

from procall.presence.manager import FULL_CHECK_EVERY, MAX_NOTE_CHARS, PresenceManager, WatchIndex
from procall.presence.model import (
    Availability,
    Capabilities,
    Presence,
    PresenceChange,
    TelephonyState,
)
from procall.presence.policy import (
    DEFAULT_CONTACTS_PAGE,
    MASKABLE_FIELDS,
    MAX_USERS_PER_REQUEST,
    CallerSession,
    check_user_ids,
    check_usernames,
    contacts_page,
    requested_change,
)
from procall.presence.ports import (
    ContactStore,
    DelegationChecker,
    PresenceNotifier,
    PresenceStore,
    UserDirectory,
)

__all__ = [
    "DEFAULT_CONTACTS_PAGE",
    "FULL_CHECK_EVERY",
    "MASKABLE_FIELDS",
    "MAX_USERS_PER_REQUEST",
    "MAX_NOTE_CHARS",
    "Availability",
    "CallerSession",
    "Capabilities",
    "ContactStore",
    "DelegationChecker",
    "Presence",
    "PresenceChange",
    "PresenceManager",
    "PresenceNotifier",
    "PresenceStore",
    "TelephonyState",
    "UserDirectory",
    "WatchIndex",
    "check_user_ids",
    "check_usernames",
    "contacts_page",
    "requested_change",
]
