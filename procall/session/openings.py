"""A bound on the session openings a UCServer works on at once.

When a UCServer restarts, all of its clients come back together. Without a bound every
opening progresses a little at a time and none finishes until nearly all do; with one,
the first clients in are back first and the rest wait their turn in arrival order. Past
the queue's bound a new opening is refused at once with RESOURCE_EXHAUSTED (``OVERLOADED``)
and a ``RetryInfo`` spread around the time the queue takes to drain, instead of waiting
without end.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from procall.errors import ResourceExhausted

__all__ = ["OpeningGate"]


class OpeningGate:
    """At most ``concurrency`` openings at once (0: no bound), at most ``queue`` waiting."""

    def __init__(
        self,
        concurrency: int,
        queue: int,
        *,
        retry_after: float = 1.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """``retry_after``: typical seconds a refused opening is asked to wait (spread from
        half to 1.5 times, so that the refused clients do not come back together)."""
        self.concurrency = concurrency
        self.queue = queue
        self.retry_after = retry_after
        self._rng = rng
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.waiting = 0
        self.active = 0

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a slot for one opening; ``ResourceExhausted(OVERLOADED)`` when the queue is
        full."""
        if self.concurrency <= 0:
            yield
            return
        if self._slots.locked() and self.waiting >= self.queue:
            retry = round(self.retry_after * (0.5 + self._rng()), 1)
            raise ResourceExhausted(
                f"this UCServer is opening {self.active + self.waiting} sessions at once; "
                f"retry in {retry:g} s",
                reason="OVERLOADED",
                metadata={"limit": "opening_queue", "max": str(self.queue)},
                retry_after=retry,
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()
