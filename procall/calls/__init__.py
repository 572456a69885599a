"""Calls: placing, ringing, answering and ending softphone calls, and forwarding them.

``Calls`` (the use cases) keeps each call in the shared ``CallStore`` (Redis) by
compare-and-set, reaches the MediaServers through ``MediaServers``, tells the parties
through ``CallEvents`` and writes the journal through ``CallJournal``;
``ForwardingService`` keeps each user's forwarding rules (``ForwardingStore``, SQL) and
decides where a call rings. Transport- and storage-free.
"""

from procall.calls.forwarding import (
    DEFAULT_NO_ANSWER_TIMEOUT,
    MAX_HOPS,
    MAX_NO_ANSWER_TIMEOUT,
    MAX_RULES,
    MIN_NO_ANSWER_TIMEOUT,
    ForwardingCondition,
    ForwardingDelegations,
    ForwardingRule,
    ForwardingService,
    ForwardingStore,
    ForwardingUsers,
    NoAnswer,
    Reachability,
    ReachabilityOf,
    Route,
    check_rules,
)
from procall.calls.model import Call, CallState, EndReason, telephony_of
from procall.calls.ports import (
    Callees,
    CallEvents,
    CallJournal,
    CallStore,
    MediaAllocation,
    MediaServers,
    PickupRights,
)
from procall.calls.service import MAX_SDP_CHARS, Calls, CallTimings, journal_entries

__all__ = [
    "DEFAULT_NO_ANSWER_TIMEOUT",
    "MAX_HOPS",
    "MAX_NO_ANSWER_TIMEOUT",
    "MAX_RULES",
    "MAX_SDP_CHARS",
    "MIN_NO_ANSWER_TIMEOUT",
    "Call",
    "CallEvents",
    "CallJournal",
    "CallState",
    "CallStore",
    "CallTimings",
    "Callees",
    "Calls",
    "EndReason",
    "ForwardingCondition",
    "ForwardingDelegations",
    "ForwardingRule",
    "ForwardingService",
    "ForwardingStore",
    "ForwardingUsers",
    "MediaAllocation",
    "MediaServers",
    "NoAnswer",
    "PickupRights",
    "Reachability",
    "ReachabilityOf",
    "Route",
    "check_rules",
    "journal_entries",
    "telephony_of",
]
