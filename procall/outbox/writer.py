"""The write path that loses nothing: the central database, else the local outbox.

``DurableWriter`` owns one worker task that handles every write, so order is decided
in one place:

* **Direct mode** (the outbox is empty): pending writes are taken together — as many
  whole writes as fit in ``flush_batch`` records, without waiting for more (group
  commit) — and applied to the central database in one transaction (STORED). When
  the database is unavailable the same batch is appended to the outbox (QUEUED);
  a batch that committed just before the error is harmless there, since applying
  is idempotent.
* **Queued mode** (the outbox holds records, or a flush is under way): new writes are
  appended to the outbox behind the older ones, and a flush task applies the oldest
  ``flush_batch`` records to the database and then removes them. The flush runs
  beside the worker, so a database that hangs until its timeout delays no
  acknowledgement; after a failure it is retried every ``flush_retry_seconds``.
  Once the outbox is empty the worker goes back to direct mode.

A write is acknowledged only once it is committed centrally or synced into the
outbox; when neither works it fails with ``Unavailable`` and nothing is promised.
A leftover outbox from an earlier run simply starts the writer in queued mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from procall.chat.model import ChatMessage
from procall.errors import ProcallError, Unavailable
from procall.outbox.ports import CentralWriter, Outbox, Record

__all__ = ["DurableWriter", "Persisted"]

_log = logging.getLogger(__name__)


class Persisted(enum.Enum):
    """Where an acknowledged write is."""

    #: Committed in the central database.
    STORED = "STORED"
    #: Synced into the local outbox; it reaches the central database when that is back.
    QUEUED = "QUEUED"


@dataclass(eq=False)
class _Write:
    records: tuple[Record, ...]
    done: asyncio.Future[Persisted] = field(repr=False)


class DurableWriter:
    """Writes records to the central database, or durably to the outbox when it is down.

    ``start()`` before the first write; ``stop()`` answers every pending write and
    leaves whatever is queued in the outbox for the next run (it does not close the
    outbox, which its owner does).
    """

    def __init__(
        self,
        central: CentralWriter,
        outbox: Outbox,
        *,
        flush_batch: int = 500,
        flush_retry_seconds: float = 1.0,
    ) -> None:
        if flush_batch < 1:
            raise ValueError("flush_batch must be at least 1")
        self._central = central
        self._outbox = outbox
        self._flush_batch = flush_batch
        self._retry_seconds = max(flush_retry_seconds, 0.0)
        self._pending: deque[_Write] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._flush: asyncio.Task[int] | None = None
        # the batch the worker is writing (no longer pending, not yet answered)
        self._inflight: list[_Write] = []
        self._next_flush = 0.0
        self._stopping = False
        self._central_available = True

    # -- state ------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Records waiting in the outbox."""
        return self._outbox.depth

    @property
    def central_available(self) -> bool:
        """Whether the last attempt to reach the central database worked."""
        return self._central_available

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; a non-empty outbox begins to flush at once."""
        if self._worker is not None:
            raise RuntimeError("DurableWriter was already started")
        if self._outbox.depth == 0:
            self._drained.set()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="durable-writer")

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new writes, answer all pending ones, then end the worker.

        A flush under way may finish (it is bounded by the database's own timeouts);
        after ``timeout`` seconds the worker is cancelled and writes still pending fail
        with ``Unavailable``.
        """
        self._stopping = True
        self._wake.set()
        worker = self._worker
        if worker is None or worker.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(worker), timeout)
        except TimeoutError:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        except Exception:
            pass  # the worker failed earlier and logged why; its writes were answered

    async def drained(self, timeout: float | None = None) -> bool:
        """Wait until the outbox is empty and no flush is under way; False on timeout."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- the write path -----------------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> Persisted:
        """Store or durably queue ``records`` (in order, after all earlier writes).

        ``Unavailable`` when neither the database nor the outbox took them; reason
        OUTBOX_FULL when the outbox is full, SERVER_DRAINING once stopping.
        """
        if self._stopping:
            raise Unavailable(
                "the server is shutting down; the write was not accepted",
                reason="SERVER_DRAINING",
            )
        if self._worker is None:
            raise RuntimeError("DurableWriter.start() was not called")
        if self._worker.done():
            raise Unavailable.backend("chat write path")
        if not records:
            return Persisted.QUEUED if self._outbox.depth else Persisted.STORED
        write = _Write(tuple(records), asyncio.get_running_loop().create_future())
        self._pending.append(write)
        self._wake.set()
        return await write.done

    async def find_queued_message(
        self, conversation_id: str, sender_id: str, request_id: str
    ) -> ChatMessage | None:
        """A message still waiting in the outbox, by its idempotency key."""
        return await self._outbox.find_message(conversation_id, sender_id, request_id)

    # -- the worker ---------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                # cleared before looking at the state, so a wake-up in between is not lost
                self._wake.clear()
                now = loop.time()
                if self._flush is not None and self._flush.done():
                    self._flush_finished(self._flush, now)
                    self._flush = None
                queued = self._outbox.depth > 0 or self._flush is not None
                if queued and self._flush is None and not self._stopping:
                    if now >= self._next_flush:
                        # started before the pending writes are handled, so a steady
                        # stream of writes cannot starve the flush
                        self._flush = loop.create_task(self._flush_once(), name="outbox-flush")
                        self._flush.add_done_callback(lambda _: self._wake.set())
                if not queued:
                    self._drained.set()
                if self._pending:
                    # kept in _inflight until answered, so that a cancelled worker still
                    # answers them (see _worker_ended)
                    self._inflight = self._take_batch()
                    if queued:
                        await self._queue(self._inflight)
                    else:
                        await self._direct(self._inflight)
                    self._inflight = []
                    continue
                if self._stopping and self._flush is None:
                    return
                timeout: float | None = None
                if self._flush is None and queued:
                    timeout = max(self._next_flush - now, 0.0)  # the next retry
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.CancelledError:
            raise
        except BaseException:
            _log.exception("durable writer failed; pending writes are refused")
            raise
        finally:
            self._worker_ended()

    def _worker_ended(self) -> None:
        flush, self._flush = self._flush, None
        if flush is not None:
            if flush.done():
                if not flush.cancelled():
                    flush.exception()  # retrieved, so asyncio does not warn about it
            else:
                # an interrupted flush is safe: its records stay queued and apply idempotently
                flush.cancel()
        if self._stopping:
            error = Unavailable(
                "the server is shutting down; the write was not accepted",
                reason="SERVER_DRAINING",
            )
        else:
            error = Unavailable(
                "the chat write path failed; the write was not accepted, try again later",
                metadata={"backend": "chat write path"},
            )
        # an interrupted outbox append may still have committed: then the record is
        # delivered although refused here, which a retry with the same request id absorbs
        for write in [*self._inflight, *self._pending]:
            _resolve(write, error)
        self._inflight = []
        self._pending.clear()

    def _take_batch(self) -> list[_Write]:
        """Whole pending writes up to ``flush_batch`` records (at least one write)."""
        batch = [self._pending.popleft()]
        count = len(batch[0].records)
        while self._pending and count + len(self._pending[0].records) <= self._flush_batch:
            write = self._pending.popleft()
            batch.append(write)
            count += len(write.records)
        return batch

    async def _direct(self, batch: list[_Write]) -> None:
        try:
            await self._central.apply([r for write in batch for r in write.records])
        except Unavailable:
            self._set_central_available(False)
            # it just failed: the first flush of what is queued now waits a retry period
            self._next_flush = asyncio.get_running_loop().time() + self._retry_seconds
            await self._queue(batch)
            return
        except Exception as exc:
            if len(batch) == 1:
                # rejected by the database (not unreachable): queuing it would only block
                # everything behind it, so the caller gets the error
                _resolve(batch[0], exc)
                return
            # find the write that was refused; the others of its group should not suffer
            for index, write in enumerate(batch):
                if self._outbox.depth:
                    # an earlier one went to the outbox: the rest must queue behind it
                    await self._queue(batch[index:])
                    return
                await self._direct([write])
            return
        self._set_central_available(True)
        for write in batch:
            _resolve(write, Persisted.STORED)

    async def _queue(self, batch: list[_Write]) -> None:
        try:
            await self._outbox.append([r for write in batch for r in write.records])
        except Exception as exc:
            if len(batch) > 1:
                # a full outbox may still take the smaller writes of the group one by one
                for write in batch:
                    await self._queue([write])
                return
            _resolve(batch[0], _outbox_error(exc))
            return
        self._drained.clear()
        for write in batch:
            _resolve(write, Persisted.QUEUED)

    async def _flush_once(self) -> int:
        """Apply the oldest queued records to the database and remove them."""
        queued = await self._outbox.peek(self._flush_batch)
        if not queued:
            return 0
        try:
            await self._central.apply([record for _, record in queued])
        except Unavailable:
            self._set_central_available(False)
            raise
        self._set_central_available(True)
        await self._outbox.remove_through(queued[-1][0])
        return len(queued)

    def _flush_finished(self, task: asyncio.Task[int], now: float) -> None:
        if task.cancelled():
            self._next_flush = now + self._retry_seconds
            return
        exc = task.exception()
        if exc is None:
            self._next_flush = 0.0  # more to do: flush again at once
            if self._outbox.depth == 0:
                _log.info("outbox flushed to the chat database")
            return
        self._next_flush = now + self._retry_seconds
        if not isinstance(exc, Unavailable):
            # a record the database refuses stays first in line; it must not be dropped
            # (it was acknowledged), so say loudly why the outbox does not drain
            _log.error("outbox flush failed; retrying", exc_info=exc)

    def _set_central_available(self, available: bool) -> None:
        if available != self._central_available:
            if available:
                _log.info("chat database reachable again (outbox depth %d)", self._outbox.depth)
            else:
                _log.warning("chat database unavailable; writes go to the local outbox")
        self._central_available = available


def _resolve(write: _Write, outcome: Persisted | BaseException) -> None:
    # a caller that gave up (cancelled) no longer listens; the write itself still counts
    if write.done.done():
        return
    if isinstance(outcome, Persisted):
        write.done.set_result(outcome)
    else:
        write.done.set_exception(outcome)


def _outbox_error(exc: Exception) -> Exception:
    if isinstance(exc, ProcallError):
        return exc
    _log.error("outbox append failed", exc_info=exc)
    return Unavailable(
        "the chat database and the local outbox are unavailable; "
        "the write was not accepted, try again later",
        metadata={"backend": "outbox"},
        retry_after=1.0,
    )
