"""Recording without slowing the audited call: a bounded queue flushed in batches.

``BufferedAuditLog.record`` only appends to an in-memory queue and returns; a
background task writes what is queued to the ``AuditSink`` in batches (one
transaction per batch). When the store does not answer, the batch is kept and
retried; when the queue is full (the store has been gone for a long time), the
oldest events are dropped with one warning per outage, so that the audited
calls never wait or fail for the audit log. ``stop`` writes what is left, within
a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from procall.audit.model import AuditEvent

__all__ = ["AuditSink", "BufferedAuditLog"]

_log = logging.getLogger(__name__)


class AuditSink(Protocol):
    """Where batches of audit events are stored (the SQL audit store)."""

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """Store ``events`` durably in one go; raises when the store does not answer."""
        ...


class BufferedAuditLog:
    """An ``AuditLog`` that queues events and writes them to a sink in the background."""

    def __init__(
        self,
        sink: AuditSink,
        *,
        max_queued: int = 100_000,
        batch: int = 500,
        retry_seconds: float = 1.0,
    ) -> None:
        self._sink = sink
        self._queue: deque[AuditEvent] = deque()
        self._max = max_queued
        self._batch = batch
        self._retry = retry_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dropping = False
        #: Events dropped because the queue was full.
        self.dropped = 0

    @property
    def queued(self) -> int:
        """Events not yet written."""
        return len(self._queue)

    async def record(self, event: AuditEvent) -> None:
        """Queue ``event``; never waits for the store and never fails."""
        self.record_nowait(event)

    def record_nowait(self, event: AuditEvent) -> None:
        """``record`` for code that cannot await."""
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                _log.warning("audit queue full: dropping the oldest events until the store answers")
        self._queue.append(event)
        self._wake.set()

    def start(self) -> None:
        """Start the background writer."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if not await self._flush_once():
                    await asyncio.sleep(self._retry)

    async def _flush_once(self) -> bool:
        events = [self._queue[i] for i in range(min(self._batch, len(self._queue)))]
        try:
            await self._sink.append(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a store outage must never reach an audited call
            _log.warning("audit events not written yet (%s); retrying", type(exc).__name__)
            return False
        for _ in events:
            self._queue.popleft()
        self._dropping = False
        return True

    async def flush(self) -> None:
        """Write everything queued now (tests, shutdown); raises when the store fails."""
        while self._queue:
            events = [self._queue[i] for i in range(min(self._batch, len(self._queue)))]
            await self._sink.append(events)
            for _ in events:
                self._queue.popleft()

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop the writer and write what is left (given up after ``timeout`` seconds)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except Exception:  # logged, not raised: shutdown goes on
            _log.warning("%d audit events could not be written at shutdown", len(self._queue))
