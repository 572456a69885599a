"""Feeding a server's ``LoadShedder`` (``procall.limits.overload``) with its event loop's lag.

``LagSampler`` wakes every ``interval`` seconds and reports how late it woke:
the time every request, ack and event currently waits in the loop's queue. It is the
process's only lag sampler: the metrics and the benchmarks' vitals listen to it too.
``shedder_of`` builds the shedder from ``[limits]``; ``LimitsInterceptor`` asks it
before each call that may be shed (``SHEDDABLE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

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
    """The one sampler of a server process's event-loop lag.

    It wakes every ``interval`` seconds and hands how late it woke (seconds) to every
    listener: the ``LoadShedder`` (given here), the loop-lag histogram of the metrics and
    the vitals of the benchmarks (``procall.servers.runtime.vitals``) add theirs. A
    listener runs on the loop: it must be quick. ``ServerApp`` starts and stops it.
    """

    def __init__(self, shedder: LoadShedder | None = None, interval: float = 0.05) -> None:
        self._shedder = shedder
        #: Seconds between two samples (read at every sample: it may be lowered).
        self.interval = interval
        self._listeners: list[Callable[[float], None]] = []
        self._task: asyncio.Task[None] | None = None

    def listen(self, listener: Callable[[float], None]) -> None:
        """Hand every sample (seconds late) to ``listener`` from now on."""
        self._listeners.append(listener)

    def begin(self) -> None:
        """Start sampling from the running loop (idempotent)."""
        if self._task is None:  # also while the lag check is off: it may be turned on
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="loop-lag-sampler"
            )

    async def start(self, _app: object = None) -> None:
        """Start sampling (idempotent; usable as a start hook)."""
        self.begin()

    async def stop(self, _app: object = None) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        shedder = self._shedder
        was_overloaded = False
        while True:
            interval = self.interval
            # perf_counter, not loop.time(): uvloop's clock counts whole milliseconds
            due = time.perf_counter() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, time.perf_counter() - due)
            for listener in self._listeners:
                try:
                    listener(lag)
                except Exception:  # one broken listener must not stop the others
                    log.exception("a loop-lag listener failed")
            if shedder is None:
                continue
            shedder.record_lag(lag)
            overloaded = shedder.overloaded
            if overloaded != was_overloaded:
                was_overloaded = overloaded
                if overloaded:
                    log.warning("past capacity: new client calls are refused for now")
                else:
                    log.info("back under capacity: %d calls were refused", shedder.shed)
