"""Revoked sessions: a token of a session that logged out is refused everywhere.

Tokens are self-contained (signed claims), so a logout cannot take a token
back; instead every UCServer keeps the list of revoked session ids until the
last token those sessions could have had expires. The list is checked on every
token verification, in memory (no round trip on the hot path). It is fed by
this server's own logouts at once, and by the shared store (Redis) with the
revocations of every server: loaded whole at start and after every reconnect,
and followed live in between. A revocation the store could not take (it is
down) is kept here and written again by the upkeep, so this server refuses the
token meanwhile and the others learn of it once the store answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from procall.clock import UnixTime

__all__ = ["RevocationList", "RevocationStore"]


class RevocationStore(Protocol):
    """The revocations shared by every UCServer (Redis)."""

    async def revoke(self, session_id: str, until: UnixTime) -> None:
        """Record that ``session_id`` is revoked until Unix time ``until``; tell the others."""
        ...

    def follow(self) -> AsyncIterator[tuple[str, float]]:
        """Every revocation in force, then each new one as any server records it; ends
        with ``Unavailable`` when the feed breaks (then follow anew)."""
        ...


class RevocationList:
    """The revoked sessions this server knows of, with their expiry."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        #: Own revocations the store has not taken yet (session id -> until).
        self.unsaved: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def add(self, session_id: str, until: UnixTime) -> None:
        """Refuse ``session_id`` until ``until``."""
        if until > self._until.get(session_id, 0.0):
            self._until[session_id] = until

    def merge(self, revocations: Mapping[str, float]) -> None:
        """Add every revocation of ``revocations``."""
        for session_id, until in revocations.items():
            self.add(session_id, until)

    def is_revoked(self, session_id: str, now: UnixTime) -> bool:
        """Whether tokens of ``session_id`` are refused at ``now``."""
        until = self._until.get(session_id)
        return until is not None and until > now

    def prune(self, now: UnixTime) -> None:
        """Forget revocations whose tokens have all expired."""
        self._until = {s: u for s, u in self._until.items() if u > now}
        self.unsaved = {s: u for s, u in self.unsaved.items() if u > now}
