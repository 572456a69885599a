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

The buffer keeps no object per event: the times and the payloads sit in two
deques (the sequence of each follows from its position), and a payload is the
one object every recipient of a delivery shares. ``SequencedEvent`` objects are
made when events are read, and die young. Objects that wait in the buffers for
the clients' acks (seconds) are what the garbage collector's middle generation
has to look at: one per event and session made its collections long (28-52 ms
with 1,000 watchers of one user).
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
        # sequences in the buffer are contiguous, ending at _last: event n sits at index
        # n - first, where first = _last - len + 1
        self._times: deque[UnixTime] = deque()
        self._payloads: deque[P] = deque()
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
        kept = [e for e in events if e.sequence > log._acked]
        # only a run that ends at ``last`` can be replayed (an older event would be
        # taken for a later one): anything before a gap counts as dropped
        expected = last
        for index in range(len(kept) - 1, -1, -1):
            if kept[index].sequence != expected:
                kept = kept[index + 1 :]
                break
            expected -= 1
        log._times.extend(e.time for e in kept)
        log._payloads.extend(e.payload for e in kept)
        return log

    def snapshot(self) -> list[SequencedEvent[P]]:
        """The buffered (unacknowledged) events, in order."""
        return self._events(0, len(self._payloads))

    def _events(self, start: int, stop: int) -> list[SequencedEvent[P]]:
        """The buffered events at indexes ``start`` to ``stop`` (excluded)."""
        first = self._last - len(self._payloads) + 1
        times, payloads = self._times, self._payloads
        return [SequencedEvent(first + i, times[i], payloads[i]) for i in range(start, stop)]

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
        return len(self._payloads)

    async def append(self, payload: P, at: UnixTime) -> SequencedEvent[P]:
        """Add an event; wakes every follower."""
        return self.append_nowait(payload, at)

    def append_nowait(self, payload: P, at: UnixTime) -> SequencedEvent[P]:
        """``append`` without awaiting (for delivering to many sessions in one go)."""
        self.push(payload, at)
        return SequencedEvent(self._last, at, payload)

    def push(self, payload: P, at: UnixTime) -> None:
        """``append_nowait`` without making the event object (a delivery to many sessions)."""
        self._last += 1
        self._times.append(at)
        self._payloads.append(payload)
        if len(self._payloads) > self._capacity:
            self._times.popleft()
            self._payloads.popleft()
        self._wake()

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
        # the buffer ends at _last >= sequence: drop the events up to it still held
        drop = len(self._payloads) - (self._last - sequence)
        for _ in range(max(0, drop)):
            self._times.popleft()
            self._payloads.popleft()

    @property
    def resumable_from(self) -> int:
        """The lowest sequence a stream can continue after (older events were dropped)."""
        return self._last - len(self._payloads)

    def after(self, sequence: int, limit: int | None = None) -> list[SequencedEvent[P]]:
        """The buffered events after ``sequence`` (at most ``limit``); ``ReplayGap`` if some
        were dropped."""
        if sequence > self._last or sequence < 0:
            raise ReplayGap(f"sequence {sequence} was never sent")
        if sequence == self._last:
            return []
        held = len(self._payloads)
        first_buffered = self._last - held + 1
        if sequence + 1 < first_buffered:
            raise ReplayGap(f"events after {sequence} are no longer buffered")
        start = sequence + 1 - first_buffered
        stop = held if limit is None else min(held, start + limit)
        return self._events(start, stop)

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
