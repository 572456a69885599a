"""Shedding load past a server's capacity (transport-free).

A server that takes on more than its CPU can do lets its event loop fall behind:
every request, ack and event waits in the same queue, and latency grows to
seconds for everyone. ``LoadShedder`` notices the standing queue and refuses new
work instead, so that the work already admitted still finishes quickly:

* **a standing queue**: the runtime samples the event loop's lag (how late a
  timer fires) several times a second. One late timer is a burst; lag above
  ``lag_target`` for a whole ``window`` (the CoDel idea: the queue never drained
  in that time) means the server is past its capacity, and it stays so until a
  sample comes back under the target;
* **too much at once**: more than ``max_in_flight`` client calls in progress.

While either holds, new calls that start work answer RESOURCE_EXHAUSTED
(``OVERLOADED``) with a ``RetryInfo`` spread around ``retry_after`` (so that the
refused clients do not all come back in the same instant). What finishes work
(logging out, hanging up) and what keeps sessions alive (streams, acks) is never
refused: the caller decides which calls may be shed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from procall.errors import ResourceExhausted

__all__ = ["LoadShedder", "OverloadConfig"]


@dataclass(frozen=True)
class OverloadConfig:
    """When a server counts as past its capacity (``[limits]`` in the settings)."""

    #: Event-loop lag (seconds) that, held for ``window``, means overload; 0 turns the
    #: lag check off.
    lag_target: float = 0.1
    #: Seconds the lag must stay above ``lag_target`` before calls are refused.
    window: float = 1.0
    #: Client calls in progress at once above which new ones are refused; 0: no cap.
    max_in_flight: int = 2000
    #: Typical seconds a refused caller is asked to wait (spread from half to 1.5 times).
    retry_after: float = 1.0


class LoadShedder:
    """Decides whether a server takes a new call; see the module doc."""

    def __init__(
        self,
        config: OverloadConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._clock = clock
        self._rng = rng
        self._above_since: float | None = None
        self._lagging = False
        #: Client calls in progress (``started`` minus ``finished``).
        self.in_flight = 0
        #: Calls refused since start.
        self.shed = 0

    @property
    def overloaded(self) -> bool:
        """Whether new calls are refused right now."""
        cap = self.config.max_in_flight
        return self._lagging or (cap > 0 and self.in_flight >= cap)

    def record_lag(self, lag: float) -> None:
        """One sample of the event loop's lag, in seconds."""
        target = self.config.lag_target
        if target <= 0 or lag <= target:
            self._above_since = None
            self._lagging = False
            return
        now = self._clock()
        if self._above_since is None:
            self._above_since = now - lag  # the loop was already behind while it was late
        if now - self._above_since >= self.config.window:
            self._lagging = True

    def admit(self) -> None:
        """Count a new call in progress, or refuse it with ``ResourceExhausted``
        (``OVERLOADED``) while the server is past its capacity. Call ``finished`` when an
        admitted call ends."""
        if self.overloaded:
            self.shed += 1
            retry = round(self.config.retry_after * (0.5 + self._rng()), 1)
            raise ResourceExhausted(
                "this server is past its capacity and refuses new work for now; "
                f"retry in {retry:g} s",
                reason="OVERLOADED",
                metadata={"in_flight": str(self.in_flight)},
                retry_after=retry,
            )
        self.in_flight += 1

    def finished(self) -> None:
        """An admitted call ended."""
        self.in_flight = max(0, self.in_flight - 1)
