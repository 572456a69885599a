"""What the call use cases need from the rest of the system."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from procall.calls.model import Call
from procall.journal.model import JournalEntry

__all__ = [
    "CallEvents",
    "CallJournal",
    "CallStore",
    "Callees",
    "MediaAllocation",
    "MediaServers",
    "PickupRights",
]


class CallStore(Protocol):
    """The shared call state (Redis): every UCServer reads and changes the same calls."""

    async def create(self, call: Call, ttl: float, request_ttl: float) -> Call:
        """Store a new call; when the caller's ``request_id`` already made a call, store
        nothing and return that one."""
        ...

    async def by_request(self, caller: str, request_id: str) -> Call | None:
        """The call a caller's ``request_id`` made, if it is still known."""
        ...

    async def get(self, call_id: str) -> Call | None:
        """One call, None when unknown or expired."""
        ...

    async def replace(self, call: Call, ttl: float) -> bool:
        """Store ``call`` if the stored one still has ``call.version - 1``; False when another
        change came first (re-read and decide again)."""
        ...

    async def active_of(self, user_id: str) -> list[Call]:
        """The calls of a user that have not ended."""
        ...

    async def refresh(self, calls: Sequence[Call], ttl: float) -> None:
        """Keep these live calls (and their parties' indexes) from expiring."""
        ...


@dataclass(frozen=True)
class MediaAllocation:
    """The MediaServer chosen for a call."""

    server_id: str
    address: str


class MediaServers(Protocol):
    """The MediaServers, reached through the Lookup's allocation."""

    async def allocate(self, call_id: str, exclude: Sequence[str] = ()) -> MediaAllocation:
        """Choose (or find again) the MediaServer of a call, never one of ``exclude``;
        ``Unavailable`` (MEDIA_UNAVAILABLE) when none can take it."""
        ...

    async def release(self, call_id: str, media: MediaAllocation) -> None:
        """End the call's bridge and its allocation (best effort)."""
        ...

    async def negotiate(
        self, media: MediaAllocation, call_id: str, user_id: str, sdp_offer: str
    ) -> str:
        """Create the user's leg on the call's bridge; returns the SDP answer.
        ``Unavailable`` (MEDIA_UNAVAILABLE) when the MediaServer does not answer."""
        ...

    async def bridges(self, media: MediaAllocation) -> frozenset[str] | None:
        """The ids of the MediaServer's open bridges (a cheap probe); None when it does not
        answer."""
        ...


class Callees(Protocol):
    """What placing a call needs to know about the user called."""

    async def exists(self, user_id: str) -> bool:
        """Whether the user exists in the Directory."""
        ...

    async def user_id_of(self, username: str) -> str | None:
        """The id of the user with this login name, None when there is none."""
        ...

    async def online(self, user_id: str) -> bool:
        """Whether the user has a client logged on anywhere."""
        ...


class PickupRights(Protocol):
    """Who may pick up whose calls."""

    async def may_pick_up(self, actor_user_id: str, target_user_id: str) -> bool:
        """Whether ``actor`` may take calls ringing for ``target`` (one pick-up group, or
        the calls.pickup delegation)."""
        ...


class CallEvents(Protocol):
    """Tells the parties' clients (wherever they are homed) that a call changed."""

    async def changed(self, call: Call) -> None:
        """Deliver the call's new state to every party."""
        ...


class CallJournal(Protocol):
    """Records the journal entries of an ended call."""

    async def record(self, entries: Sequence[JournalEntry]) -> None:
        """Write the entries (idempotent per entry id) and tell their users."""
        ...
