"""In-memory stand-ins for the ports of sessions.

``MemoryRevocationStore`` follows the semantics of ``RedisRevocationStore``:
tests/integration/ports/test_revocation_store.py runs one suite against both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from procall.clock import Clock, UnixTime
from procall.errors import Unavailable
from procall.session.ports import AuthenticatedUser

__all__ = ["MemoryRevocationStore"]


class MemoryRevocationStore:
    """``RevocationStore`` over a dict: revocations past their time are pruned on every write
    and read, the higher ``until`` of a session wins, and followers get each new one live."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        #: session id -> until, the revocations in force.
        self.saved: dict[str, UnixTime] = {}
        #: Every call fails, as with Redis down.
        self.down = False
        self._followers: list[asyncio.Queue[tuple[str, UnixTime] | None]] = []

    def _check(self) -> None:
        if self.down:
            raise Unavailable.backend("Redis")

    def _prune(self) -> None:
        now = self._clock()
        self.saved = {s: until for s, until in self.saved.items() if until > now}

    async def revoke(self, session_id: str, until: UnixTime) -> None:
        self._check()
        self.saved[session_id] = max(self.saved.get(session_id, until), until)
        self._prune()
        for queue in self._followers:
            queue.put_nowait((session_id, until))

    def break_feeds(self) -> None:
        """Every follower's feed breaks (its ``follow`` ends with ``Unavailable``)."""
        for queue in self._followers:
            queue.put_nowait(None)

    async def follow(self) -> AsyncIterator[tuple[str, UnixTime]]:
        self._check()
        queue: asyncio.Queue[tuple[str, UnixTime] | None] = asyncio.Queue()
        self._followers.append(queue)
        try:
            self._prune()
            for item in list(self.saved.items()):
                yield item
            while True:
                entry = await queue.get()
                if entry is None:
                    raise Unavailable.backend("Redis")
                yield entry
        finally:
            self._followers.remove(queue)


class StepClock:
    """A clock tests move by hand (starts at Unix time 1000)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestAuthenticator:
    """Accepts every password; users are homed on uc-1."""

    __test__ = False

    async def authenticate(
        self, username: str, password: str, source: str = ""
    ) -> AuthenticatedUser:
        """``u-<username>``, homed on uc-1, not an administrator."""
        return AuthenticatedUser("u-" + username, username, "uc-1", False)


class TestLocator:
    """Every server is at 127.0.0.1:1."""

    __test__ = False

    async def address_of(self, server_id: str) -> str | None:
        """The one address."""
        return "127.0.0.1:1"
