"""In-memory stand-ins for the ports of presence (the seams under ``PresenceManager``).

``MemoryPresenceStore`` and ``MemoryContactStore`` follow the semantics of
``RedisPresenceStore`` and ``SqlContactStore``: tests/integration/ports runs one behaviour
suite against each fake and its real store, so a fake that drifts fails there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from procall.errors import Unavailable
from procall.presence.model import (
    Availability,
    Capabilities,
    Presence,
    PresenceChange,
    TelephonyState,
)

__all__ = [
    "MemoryContactStore",
    "MemoryDelegationChecker",
    "MemoryPresenceStore",
    "RecordingNotifier",
]


@dataclass
class _Stored:
    """One user's stored presence: the fields of the Redis hash."""

    availability: Availability | None = None
    note: str = ""
    telephony: TelephonyState = TelephonyState.UNSPECIFIED
    set_by: str = ""
    version: int = 0
    update_time: float = 0.0
    server_id: str = ""
    sessions: dict[str, Capabilities] = field(default_factory=dict)

    def visible(self) -> tuple[object, ...]:
        """What watchers see of it (a change of anything else is no change for them)."""
        caps = Capabilities()
        for session_caps in self.sessions.values():
            caps = caps.union(session_caps)
        return (self.availability, self.note, self.telephony, self.set_by, caps)

    def presence(self, user_id: str) -> Presence:
        caps = Capabilities()
        for session_caps in self.sessions.values():
            caps = caps.union(session_caps)
        return Presence(
            user_id=user_id,
            availability=self.availability or Availability.OFFLINE,
            note=self.note,
            telephony=self.telephony,
            capabilities=caps,
            version=self.version,
            update_time=self.update_time,
            set_by=self.set_by,
            server_id=self.server_id,
        )


class MemoryPresenceStore:
    """``PresenceStore`` over dicts, with the semantics of the Redis scripts (TTLs ignored)."""

    def __init__(self) -> None:
        self.stored: dict[str, _Stored] = {}
        self.down = False
        self.interest: dict[str, set[str]] = {}
        self.alive: set[str] = set()
        self._version = 0

    def _check(self) -> None:
        if self.down:
            raise Unavailable.backend("Redis")

    def _bump(self, stored: _Stored) -> None:
        # as in Redis: max(previous + 1, now in microseconds)
        now = time.time()
        stored.version = max(stored.version + 1, int(now * 1_000_000), self._version + 1)
        self._version = stored.version
        stored.update_time = now

    @property
    def data(self) -> dict[str, Presence]:
        """Every stored presence by user id."""
        return {user_id: s.presence(user_id) for user_id, s in self.stored.items()}

    def put(self, presence: Presence, sessions: dict[str, Capabilities] | None = None) -> None:
        """Store a presence as it is (a test's starting point)."""
        self.stored[presence.user_id] = _Stored(
            presence.availability,
            presence.note,
            presence.telephony,
            presence.set_by,
            presence.version,
            presence.update_time,
            presence.server_id,
            dict(sessions or {}),
        )

    async def update(
        self, user_id: str, change: PresenceChange, set_by: str, server_id: str = ""
    ) -> Presence:
        self._check()
        stored = self.stored.setdefault(user_id, _Stored())
        known, before = stored.version > 0, stored.visible()
        stored.set_by = set_by
        if change.availability is not None:
            stored.availability = change.availability
        if change.note is not None:
            stored.note = change.note
        if change.telephony is not None:
            stored.telephony = change.telephony
        if change.session_capabilities is not None:
            session_id, caps = change.session_capabilities
            stored.sessions[session_id] = caps
            if server_id:
                stored.server_id = server_id
        if change.ended_session:
            stored.sessions.pop(change.ended_session, None)
        if change.session_capabilities is not None and stored.availability in (
            None,
            Availability.OFFLINE,
        ):
            stored.availability = Availability.AVAILABLE
        if change.ended_session and not stored.sessions:
            stored.availability = Availability.OFFLINE
        if not known or stored.visible() != before:  # as in Redis: no version for no change
            self._bump(stored)
        return stored.presence(user_id)

    async def update_routed(
        self,
        user_id: str,
        change: PresenceChange,
        set_by: str,
        server_id: str,
        peers: Sequence[str],
    ) -> tuple[Presence, list[str]]:
        presence = await self.update(user_id, change, set_by, server_id)
        return presence, await self.interested_servers(user_id, peers)

    async def mark_offline_if_on(self, user_ids: Sequence[str], server_id: str) -> list[Presence]:
        self._check()
        changed = []
        for user_id in user_ids:
            stored = self.stored.get(user_id)
            if stored is None or stored.server_id != server_id:
                continue
            if stored.availability is Availability.OFFLINE:
                continue
            stored.sessions.clear()
            stored.availability = Availability.OFFLINE
            stored.telephony = TelephonyState.IDLE
            stored.set_by = ""
            self._bump(stored)
            changed.append(stored.presence(user_id))
        return changed

    async def get_many(self, user_ids: Sequence[str]) -> list[Presence]:
        self._check()
        return [self.stored[u].presence(u) if u in self.stored else Presence(u) for u in user_ids]

    async def missing(self, user_ids: Sequence[str]) -> list[str]:
        self._check()
        return [u for u in user_ids if u not in self.stored]

    async def add_interest(self, server_id: str, user_ids: Iterable[str], ttl: float) -> None:
        self._check()
        self.interest.setdefault(server_id, set()).update(user_ids)

    async def remove_interest(self, server_id: str, user_ids: Iterable[str]) -> None:
        self._check()
        self.interest.get(server_id, set()).difference_update(user_ids)

    async def interested_servers(self, user_id: str, server_ids: Sequence[str]) -> list[str]:
        self._check()
        return [s for s in server_ids if user_id in self.interest.get(s, set())]

    async def interested_servers_many(
        self, user_ids: Sequence[str], server_ids: Sequence[str]
    ) -> list[list[str]]:
        self._check()
        return [await self.interested_servers(u, server_ids) for u in user_ids]

    async def heartbeat(self, server_id: str, ttl: float) -> bool:
        self._check()
        intact = server_id in self.alive
        self.alive.add(server_id)
        return intact

    def restart(self) -> None:
        """Redis restarted empty."""
        self.stored.clear()
        self.interest.clear()
        self.alive.clear()


class MemoryContactStore:
    """``ContactStore`` over lists, as ``SqlContactStore`` keeps them."""

    def __init__(self, lists: dict[str, list[str]] | None = None) -> None:
        self.lists = {owner: list(ids) for owner, ids in (lists or {}).items()}

    async def contacts_of(self, user_id: str) -> list[str]:
        return list(self.lists.get(user_id, []))

    async def contacts_of_many(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        return {user_id: list(self.lists.get(user_id, [])) for user_id in user_ids}

    async def add(self, user_id: str, contact_ids: Sequence[str]) -> None:
        mine = self.lists.setdefault(user_id, [])
        for contact_id in dict.fromkeys(contact_ids):
            if contact_id != user_id and contact_id not in mine:
                mine.append(contact_id)

    async def remove(self, user_id: str, contact_ids: Sequence[str]) -> None:
        self.lists[user_id] = [c for c in self.lists.get(user_id, []) if c not in contact_ids]

    async def count(self, user_id: str) -> int:
        return len(self.lists.get(user_id, []))


class MemoryDelegationChecker:
    """``DelegationChecker`` over a set of (actor, principal) pairs."""

    def __init__(self, allowed: set[tuple[str, str]]) -> None:
        self.allowed = allowed

    async def may_set_presence(self, actor_user_id: str, principal_user_id: str) -> bool:
        return (actor_user_id, principal_user_id) in self.allowed


class RecordingNotifier:
    """``PresenceNotifier`` that keeps what it was asked to deliver."""

    def __init__(self, peers: list[str]) -> None:
        self.peers = peers
        self.local: list[tuple[frozenset[str], Presence]] = []
        self.remote: list[tuple[str, Presence]] = []

    async def to_local_users(self, user_ids: Iterable[str], presence: Presence) -> None:
        self.local.append((frozenset(user_ids), presence))

    def peer_servers(self) -> list[str]:
        return list(self.peers)

    def to_servers(self, server_ids: Iterable[str], presence: Presence) -> None:
        self.remote.extend((s, presence) for s in server_ids)
