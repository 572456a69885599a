"""What presence needs from the rest of the system (small Protocols)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from procall.presence.model import Presence, PresenceChange

__all__ = [
    "ContactStore",
    "DelegationChecker",
    "PresenceNotifier",
    "PresenceStore",
    "UserDirectory",
]


class PresenceStore(Protocol):
    """The shared, versioned presence of every user (Redis)."""

    async def update(
        self, user_id: str, change: PresenceChange, set_by: str, server_id: str = ""
    ) -> Presence:
        """Apply a change (``server_id``: the server applying a session change)."""
        ...

    async def update_routed(
        self,
        user_id: str,
        change: PresenceChange,
        set_by: str,
        server_id: str,
        peers: Sequence[str],
    ) -> tuple[Presence, list[str]]:
        """``update``, and which of the UCServers ``peers`` watch the user (as
        ``interested_servers`` would say), in one step: one round trip per change."""
        ...

    async def mark_offline_if_on(self, user_ids: Sequence[str], server_id: str) -> list[Presence]:
        """Turn OFFLINE the users whose sessions were on a server that died."""
        ...

    async def get_many(self, user_ids: Sequence[str]) -> list[Presence]:
        """Presence of each user, in order."""
        ...

    async def missing(self, user_ids: Sequence[str]) -> list[str]:
        """Which of these users have no stored presence (lost in a store restart)."""
        ...

    async def add_interest(self, server_id: str, user_ids: Iterable[str], ttl: float) -> None:
        """Clients on ``server_id`` watch these users."""
        ...

    async def remove_interest(self, server_id: str, user_ids: Iterable[str]) -> None:
        """Clients on ``server_id`` stopped watching these users."""
        ...

    async def interested_servers(self, user_id: str, server_ids: Sequence[str]) -> list[str]:
        """Which of ``server_ids`` watch ``user_id``."""
        ...

    async def interested_servers_many(
        self, user_ids: Sequence[str], server_ids: Sequence[str]
    ) -> list[list[str]]:
        """For each of ``user_ids`` (in order), which of ``server_ids`` watch it."""
        ...

    async def heartbeat(self, server_id: str, ttl: float) -> bool:
        """Renew the TTL of ``server_id``'s state; False when the store had lost it
        (restarted empty, or the TTL ran out): the caller then writes it back whole."""
        ...


class ContactStore(Protocol):
    """Each user's durable contact list (SQL)."""

    async def contacts_of(self, user_id: str) -> list[str]:
        """Users ``user_id`` watches, in the order added."""
        ...

    async def contacts_of_many(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        """The contact lists of several users at once (each in the order added; an empty
        list for a user without contacts)."""
        ...

    async def add(self, user_id: str, contact_ids: Sequence[str]) -> None:
        """Add contacts (existing ones are left alone)."""
        ...

    async def remove(self, user_id: str, contact_ids: Sequence[str]) -> None:
        """Remove contacts."""
        ...


class DelegationChecker(Protocol):
    """Whether the Directory lets one user set another's presence."""

    async def may_set_presence(self, actor_user_id: str, principal_user_id: str) -> bool:
        """True when ``actor`` holds the presence.set delegation of ``principal``."""
        ...


class UserDirectory(Protocol):
    """Which users exist (the Directory)."""

    async def unknown_users(self, user_ids: Sequence[str]) -> list[str]:
        """The ids among ``user_ids`` that name no user; ``Unavailable`` when it cannot say."""
        ...

    async def user_ids_of(self, usernames: Sequence[str]) -> list[str | None]:
        """The user id of each username (None for a name of no user), in order."""
        ...


class PresenceNotifier(Protocol):
    """Delivers presence changes to local sessions and to other UCServers."""

    async def to_local_users(self, user_ids: Iterable[str], presence: Presence) -> None:
        """Push to the sessions of these users homed here."""
        ...

    def peer_servers(self) -> list[str]:
        """The other live UCServers."""
        ...

    def to_servers(self, server_ids: Iterable[str], presence: Presence) -> None:
        """Send to other UCServers, which push it to their watchers."""
        ...
