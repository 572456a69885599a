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

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from procall.clock import Clock, UnixTime
from procall.errors import Unauthenticated, Unavailable
from procall.session.tokens import SessionClaims
from procall.tasks import stop_task

__all__ = ["RevocationList", "RevocationStore", "RevokingVerifier", "TokenCheck"]

_log = logging.getLogger(__name__)


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


class TokenCheck(Protocol):
    """Checks a session token's signature and expiry (``TokenVerifier``)."""

    def verify(self, token: str) -> SessionClaims:
        """The claims of a valid token; ``Unauthenticated`` for any other."""
        ...


class RevokingVerifier:
    """A token checker for servers that hold no sessions (the Directory, MediaServers):
    valid tokens of sessions that logged out anywhere are refused too.

    It follows the shared revocation store (every revocation in force, then each new
    one) from ``start`` to ``stop``, and checks each token against that list in
    memory, so a call costs no round trip. While the store cannot be followed it
    keeps what it learnt and tries again every ``retry`` seconds.
    """

    def __init__(
        self,
        verifier: TokenCheck,
        store: RevocationStore,
        *,
        clock: Clock = time.time,
        retry: float = 1.0,
    ) -> None:
        self._verifier = verifier
        self._store = store
        self._clock = clock
        self._retry = retry
        #: The revoked sessions learnt from the store.
        self.revoked = RevocationList()
        self._pruned_size = 1024
        self._task: asyncio.Task[None] | None = None

    def verify(self, token: str) -> SessionClaims:
        """The claims of a valid token of a session still open; ``Unauthenticated`` else."""
        claims = self._verifier.verify(token)
        if self.revoked.is_revoked(claims.session_id, self._clock()):
            raise Unauthenticated("this session has ended (logged out); log in again")
        return claims

    async def start(self) -> None:
        """Start following the revocation store."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="revocations")

    async def stop(self) -> None:
        """Stop following."""
        task, self._task = self._task, None
        await stop_task(task)

    async def _follow(self) -> None:
        while True:
            try:
                async for session_id, until in self._store.follow():
                    self.revoked.add(session_id, until)
                    # forget the expired ones now and then (pruning is linear)
                    if len(self.revoked) > 2 * self._pruned_size:
                        self.revoked.prune(self._clock())
                        self._pruned_size = max(1024, len(self.revoked))
            except Unavailable:
                _log.warning("the revocation store is unavailable: following it again soon")
            except Exception:  # a background task must outlive any one failure
                _log.exception("following session revocations failed")
            await asyncio.sleep(self._retry)
