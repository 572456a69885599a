"""Per-session event sequencing with a bounded replay buffer.

Every event sent to a client's ``Connect`` stream gets the next sequence number
of its session (1, 2, 3, ... without gaps). Events stay buffered until the
client acks them, so a client that lost its stream resumes from its last
processed sequence and gets exactly the events it missed, in order, once. When
the buffer overflows (a client gone for long), the oldest events are dropped;
resuming from before them raises ``ReplayGap`` and the client resynchronises
its state with unary calls instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["EventLog", "ReplayGap", "SequencedEvent"]

P = TypeVar("P")


class ReplayGap(Exception):
    """The events after the requested sequence are no longer all buffered."""


@dataclass(frozen=True)
class SequencedEvent(Generic[P]):
    """An event payload with its per-session sequence number and server time."""

    sequence: int
    time: float
    payload: P


class EventLog(Generic[P]):
    """The ordered events of one session, with acks, replay and live following."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._buffer: deque[SequencedEvent[P]] = deque()
        self._last = 0
        self._acked = 0
        self._changed = asyncio.Condition()
        self._closed = False

    @property
    def last_sequence(self) -> int:
        """Sequence number of the newest event (0 before the first)."""
        return self._last

    @property
    def acked(self) -> int:
        """Highest sequence number the client has acknowledged."""
        return self._acked

    def __len__(self) -> int:
        return len(self._buffer)

    async def append(self, payload: P, at: float) -> SequencedEvent[P]:
        """Add an event; wakes every follower."""
        self._last += 1
        event = SequencedEvent(self._last, at, payload)
        self._buffer.append(event)
        while len(self._buffer) > self._capacity:
            self._buffer.popleft()
        async with self._changed:
            self._changed.notify_all()
        return event

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

    def after(self, sequence: int) -> list[SequencedEvent[P]]:
        """The buffered events after ``sequence``; ``ReplayGap`` if some were dropped."""
        if sequence > self._last or sequence < 0:
            raise ReplayGap(f"sequence {sequence} was never sent")
        first_buffered = self._buffer[0].sequence if self._buffer else self._last + 1
        if sequence + 1 < first_buffered:
            raise ReplayGap(f"events after {sequence} are no longer buffered")
        return [event for event in self._buffer if event.sequence > sequence]

    async def follow(self, sequence: int) -> AsyncIterator[SequencedEvent[P]]:
        """Yield the events after ``sequence``, then each new one as it comes, until closed."""
        position = sequence
        while True:
            pending = self.after(position)
            for event in pending:
                position = event.sequence
                yield event
            if self._closed:
                return
            async with self._changed:
                if self._last == position and not self._closed:
                    await self._changed.wait()

    async def close(self) -> None:
        """End every follower (the session ended)."""
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
