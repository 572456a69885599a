"""Feeding a server's ``LoadShedder`` (``procall.limits.overload``) with its event loop's lag.

``LagSampler`` wakes every ``interval`` seconds and reports how late it woke:
the time every request, ack and event currently waits in the loop's queue.
``shedder_of`` builds the shedder from ``[limits]``; ``LimitsInterceptor`` asks it
before each call that may be shed (``SHEDDABLE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from procall.limits import CLIENT_API_PREFIX, LoadShedder, OverloadConfig
from procall.settings import Settings

__all__ = ["NEVER_SHED", "LagSampler", "is_sheddable", "shedder_of"]

log = logging.getLogger(__name__)

#: Client calls that finish work or keep a session alive: refusing them under load would
#: leave calls up, sessions open and licenses taken, which is more load, not less.
NEVER_SHED = frozenset(
    {
        "procall.api.session.v1.SessionService/Logout",
        "procall.api.session.v1.SessionService/RefreshToken",
        "procall.api.call.v1.CallService/HangUp",
        "procall.api.call.v1.CallService/DeclineCall",
        "procall.api.call.v1.CallService/AnswerCall",
        "procall.api.call.v1.CallService/NegotiateMedia",
    }
)


def is_sheddable(method: str) -> bool:
    """Whether a call of ``method`` (``package.Service/Method``) may be refused under
    overload: client-facing calls that start new work."""
    return method.startswith(CLIENT_API_PREFIX) and method not in NEVER_SHED


def shedder_of(settings: Settings) -> LoadShedder:
    """The ``LoadShedder`` of ``[limits]``."""
    section = settings.limits
    return LoadShedder(
        OverloadConfig(
            lag_target=section.overload_lag_ms / 1000,
            window=section.overload_window_seconds,
            max_in_flight=section.max_in_flight,
            retry_after=section.overload_retry_seconds,
        )
    )


class LagSampler:
    """Samples the event loop's lag into a ``LoadShedder`` (start/stop are server hooks)."""

    def __init__(self, shedder: LoadShedder, interval: float = 0.05) -> None:
        self._shedder = shedder
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self, _app: object = None) -> None:
        """Start sampling (idempotent)."""
        if self._task is None:  # also while the lag check is off: it may be turned on
            self._task = asyncio.create_task(self._run(), name="loop-lag-sampler")

    async def stop(self, _app: object = None) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        was_overloaded = False
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self._shedder.record_lag(max(0.0, loop.time() - due))
            overloaded = self._shedder.overloaded
            if overloaded != was_overloaded:
                was_overloaded = overloaded
                if overloaded:
                    log.warning("past capacity: new client calls are refused for now")
                else:
                    log.info("back under capacity: %d calls were refused", self._shedder.shed)
