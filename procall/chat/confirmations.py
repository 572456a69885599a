"""Confirming stored sends together: one call to the shared state per group commit.

The durable writer stores the sends that wait together in one transaction and answers
them at once; each send then confirms its request id (``ChatState.confirm``). Made one
by one, those confirmations cost a Redis round trip per message. ``ConfirmBatcher``
queues them and sends whatever is queued in one ``ChatState.confirm_many``: the sends
answered by one commit resume in the same turn of the event loop, so they share a call,
and confirmations arriving while a call is under way share the next one.
"""

from __future__ import annotations

import asyncio

from procall.chat.ports import ChatState, SendConfirmation

__all__ = ["ConfirmBatcher"]

#: Confirmations sent in one call at most.
MAX_BATCH = 500


class ConfirmBatcher:
    """Coalesces concurrent confirmations into one ``confirm_many`` at a time."""

    def __init__(self, state: ChatState) -> None:
        self._state = state
        self._queue: list[tuple[SendConfirmation, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def confirm(self, confirmation: SendConfirmation) -> None:
        """Return once ``confirmation`` is recorded; raises what the state raised
        (``Unavailable`` naming Redis) for the call that carried it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((confirmation, future))
        if self._runner is None or self._runner.done():
            # a task, not a call here: it first runs after every send woken by the same
            # commit has queued its confirmation
            self._runner = asyncio.create_task(self._run(), name="chat-confirmations")
        await future

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await self._state.confirm_many([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in [*batch, *self._queue]:
                    future.cancel()
                self._queue = []
                raise
            except Exception as exc:  # every send of the batch learns of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
