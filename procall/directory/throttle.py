"""Login throttling: too many failed logins for one account lock it for a while.

Failures are counted per key: the normalized login name, and the user id once the
login resolved to a user (so alternating the username and the principal name of one
account does not double the attempts). Unknown names are counted exactly like known
ones, so the throttle reveals nothing about which accounts exist. After
``max_failures`` consecutive failures a key is locked for ``lockout_seconds``;
during the lock even the right password is refused (with the time left), which is
what makes guessing pointless. A success clears the count.

The state lives in this process (a bounded LRU map): with several Directory replicas
each enforces the limit on its own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from procall.errors import ResourceExhausted

__all__ = ["LoginThrottle"]


@dataclass
class _State:
    failures: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Counts failed logins per key and refuses locked keys with RESOURCE_EXHAUSTED."""

    def __init__(
        self,
        max_failures: int,
        lockout_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max(1, max_failures)
        self.lockout_seconds = lockout_seconds
        self._clock = clock
        self._max_keys = max_keys
        self._states: OrderedDict[str, _State] = OrderedDict()

    def check(self, keys: Iterable[str]) -> None:
        """Raise ``ResourceExhausted`` (with the seconds left) if any key is locked."""
        now = self._clock()
        for key in keys:
            state = self._states.get(key)
            if state is not None and state.locked_until > now:
                remaining = state.locked_until - now
                raise ResourceExhausted(
                    "too many failed logins for this account; try again later",
                    retry_after=max(1.0, round(remaining, 1)),
                )

    def failure(self, keys: Iterable[str]) -> None:
        """Count one failed login for each key; lock keys that reach the limit."""
        now = self._clock()
        for key in keys:
            state = self._states.pop(key, None) or _State()
            if state.locked_until and state.locked_until <= now:
                state = _State()  # the lock expired: start counting afresh
            state.failures += 1
            if state.failures >= self.max_failures:
                state.failures = 0
                state.locked_until = now + self.lockout_seconds
            self._states[key] = state
        while len(self._states) > self._max_keys:
            self._states.popitem(last=False)

    def success(self, keys: Iterable[str]) -> None:
        """Forget the failures of each key."""
        for key in keys:
            self._states.pop(key, None)
