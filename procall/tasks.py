"""Stopping background tasks for good.

A background loop that waits on a library call with a timeout (a Redis subscription read
with ``timeout=1.0``, for instance) can lose a cancellation: on Python 3.11, a cancel that
lands while the call's own timeout fires may come back as that timeout, and the loop goes
round again. One ``cancel()`` then leaves the task running, a server's stop hangs, and the
event loop's close waits for it forever. ``stop_task`` cancels again until the task ends,
within a bound.
"""

from __future__ import annotations

import asyncio
import logging

_log = logging.getLogger(__name__)

#: How long one cancellation is given to take effect before the next is sent.
_NUDGE_SECONDS = 0.25


async def stop_task(task: asyncio.Task[object] | None, *, patience: float = 5.0) -> bool:
    """Cancel ``task`` and wait until it ended, cancelling again while it runs on.

    Returns whether it ended within ``patience`` seconds (a warning names it if not). The
    task's result or exception is consumed: a stopped task raises nothing here.
    """
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            _log.warning("task %s did not stop within %.1f s", task.get_name(), patience)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(_NUDGE_SECONDS, remaining))
    if not task.cancelled():
        task.exception()  # retrieved, so that asyncio does not log it as never retrieved
    return True
