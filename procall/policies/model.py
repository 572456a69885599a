"""Client policies: what administrators deny the clients of a user or a group (transport-free)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from procall.clock import UnixTime

__all__ = ["ClientFeature", "ClientPolicy", "SubjectKind", "denied_for"]


class ClientFeature(enum.IntEnum):
    """Something a client may be allowed to use; values are those of the wire enum."""

    CHAT = 1
    CALLS = 2
    VIDEO = 3
    CONFERENCES = 4
    FILE_SHARING = 5
    PRESENCE_FOR_OTHERS = 6
    FORWARDING_FOR_OTHERS = 7


class SubjectKind(enum.IntEnum):
    """Whom a policy is for; values are those of the wire enum."""

    USER = 1
    GROUP = 2


@dataclass(frozen=True)
class ClientPolicy:
    """The features denied to a user's clients, or to every member of a group."""

    kind: SubjectKind
    subject_id: str
    denied: frozenset[ClientFeature] = frozenset()
    #: 0 for a subject without a stored policy.
    version: int = 0
    update_time: UnixTime | None = None
    updated_by: str = ""


def denied_for(
    own: ClientPolicy | None, group_policies: Iterable[ClientPolicy]
) -> frozenset[ClientFeature]:
    """What a user's clients may not use: the user's own policy when one was set (it
    overrides the groups', so an administrator can allow one member more), else every
    feature any of the user's groups denies."""
    if own is not None and own.version > 0:
        return own.denied
    found: set[ClientFeature] = set()
    for policy in group_policies:
        found |= policy.denied
    return frozenset(found)
