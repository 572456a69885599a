"""Per-session event sequencing with a bounded replay buffer.

Every event sent to a client's ``Connect`` stream gets the next sequence number
of its session (1, 2, 3, ... without gaps). Events stay buffered until the
client acks them, so a client that lost its stream resumes from its last
processed sequence and gets exactly the events it missed, in order, once. When
the buffer overflows (a client gone for long), the oldest events are dropped;
resuming from before them raises ``ReplayGap`` and the client resynchronises
its state with unary calls instead.

Appending is synchronous and cheap (no lock, no task switch): a delivery to
thousands of sessions costs one list append and at most one wake-up each. A
follower that falls behind picks up everything pending in one go
(``follow_batches``), so a busy stream sends fewer, larger messages instead of
falling further behind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from procall.clock import UnixTime

__all__ = ["EventLog", "ReplayGap", "SequencedEvent"]

P = TypeVar("P")


class ReplayGap(Exception):
    """The events after the requested sequence are no longer all buffered."""


@dataclass(frozen=True, slots=True)
class SequencedEvent(Generic[P]):
    """An event payload with its per-session sequence number and server time."""

    sequence: int
    time: UnixTime
    payload: P


class EventLog(Generic[P]):
    """The ordered events of one session, with acks, replay and live following."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        # sequences in the buffer are contiguous: event n sits at index n - first
        self._buffer: deque[SequencedEvent[P]] = deque()
        self._last = 0
        self._acked = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    @classmethod
    def restored(
        cls, capacity: int, events: list[SequencedEvent[P]], last: int, acked: int
    ) -> EventLog[P]:
        """A log that continues another server's log of the same session (a moved user):
        its unacked ``events`` (contiguous, ending at ``last``) stay replayable and the
        next event gets ``last + 1``."""
        log = cls(capacity)
        log._last = last
        log._acked = min(acked, last)
        log._buffer.extend(e for e in events if e.sequence > log._acked)
        return log

    def snapshot(self) -> list[SequencedEvent[P]]:
        """The buffered (unacknowledged) events, in order."""
        return list(self._buffer)

    @property
    def last_sequence(self) -> int:
        """Sequence number of the newest event (0 before the first)."""
        return self._last

    @property
    def acked(self) -> int:
        """Highest sequence number the client has acknowledged."""
        return self._acked

    @property
    def closed(self) -> bool:
        """Whether the session ended (followers finish)."""
        return self._closed

    def __len__(self) -> int:
        return len(self._buffer)

    async def append(self, payload: P, at: UnixTime) -> SequencedEvent[P]:
        """Add an event; wakes every follower."""
        return self.append_nowait(payload, at)

    def append_nowait(self, payload: P, at: UnixTime) -> SequencedEvent[P]:
        """``append`` without awaiting (for delivering to many sessions in one go)."""
        self._last += 1
        event = SequencedEvent(self._last, at, payload)
        self._buffer.append(event)
        if len(self._buffer) > self._capacity:
            self._buffer.popleft()
        self._wake()
        return event

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def ack(self, sequence: int) -> None:
        """Forget events up to ``sequence``; acks never move backwards or past the end."""
        sequence = min(sequence, self._last)
        if sequence <= self._acked:
            return
        self._acked = sequence
        while self._buffer and self._buffer[0].sequence <= sequence:
            self._buffer.popleft()

    @property
    def resumable_from(self) -> int:
        """The lowest sequence a stream can continue after (older events were dropped)."""
        return self._buffer[0].sequence - 1 if self._buffer else self._last

    def after(self, sequence: int, limit: int | None = None) -> list[SequencedEvent[P]]:
        """The buffered events after ``sequence`` (at most ``limit``); ``ReplayGap`` if some
        were dropped."""
        if sequence > self._last or sequence < 0:
            raise ReplayGap(f"sequence {sequence} was never sent")
        if sequence == self._last:
            return []
        first_buffered = self._buffer[0].sequence if self._buffer else self._last + 1
        if sequence + 1 < first_buffered:
            raise ReplayGap(f"events after {sequence} are no longer buffered")
        start = sequence + 1 - first_buffered
        stop = len(self._buffer) if limit is None else min(len(self._buffer), start + limit)
        if start == 0 and stop == len(self._buffer):
            return list(self._buffer)
        return [self._buffer[i] for i in range(start, stop)]

    async def changed(self, position: int) -> None:
        """Wait until there is an event after ``position`` or the log is closed (for a
        follower that reads with ``after`` itself)."""
        while self._last == position and not self._closed:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._waiters = [w for w in self._waiters if w is not waiter]

    async def follow(self, sequence: int) -> AsyncIterator[SequencedEvent[P]]:
        """Yield the events after ``sequence``, then each new one as it comes, until closed."""
        async for batch in self.follow_batches(sequence):
            for event in batch:
                yield event

    async def follow_batches(
        self, sequence: int, max_batch: int = 1000
    ) -> AsyncIterator[list[SequencedEvent[P]]]:
        """Like ``follow``, but yield everything pending at once (up to ``max_batch``).

        ``ReplayGap`` when the follower fell so far behind that events it had not
        yet been given were dropped from the buffer.
        """
        position = sequence
        while True:
            pending = self.after(position, max_batch)
            if pending:
                position = pending[-1].sequence
                yield pending
                continue
            if self._closed:
                return
            await self.changed(position)

    async def close(self) -> None:
        """End every follower (the session ended)."""
        self._closed = True
        self._wake()
