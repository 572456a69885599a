"""Login throttling per account and network source, with an account-wide ceiling.

Failures are counted per key: the normalized login name, and the user id once the
login resolved to a user (so alternating the username and the principal name of one
account does not double the attempts). Unknown names are counted exactly like known
ones, so the throttle reveals nothing about which accounts exist.

**Per source.** After ``max_failures`` consecutive failures of a key *from one
network source* (the client's address, which the UCServer passes on), that source
is locked out of the account for ``lockout_seconds``; during the lock even the right
password is refused from there (with the time left), which is what makes guessing
pointless. Other sources are not affected: an attacker who sends five wrong
passwords every 30 s locks only himself out, not the user at her desk. A success
clears the count of its source.

**Account-wide ceiling.** Failures from all sources together fill a leaky bucket
per key that drains ``max_account_failures`` per ``10 x lockout_seconds``; when it
is full, the account is locked everywhere for ``lockout_seconds``. One source is
held to ``max_failures`` per lockout period and so never fills it with the default
numbers (5 per 30 s against 100 per 300 s); only a guessing attack spread over many
sources does, and then the account must stop answering. ``max_account_failures``
0 turns the ceiling off.

The state lives in this process (bounded LRU maps): with several Directory replicas
each enforces the limits on its own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from procall.errors import ResourceExhausted

__all__ = ["ACCOUNT_WINDOW_FACTOR", "LoginThrottle"]

#: The account-wide bucket drains its capacity over this many lockout periods.
ACCOUNT_WINDOW_FACTOR = 10


@dataclass
class _State:
    failures: int = 0
    locked_until: float = 0.0


@dataclass
class _Level:
    level: float = 0.0
    updated: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Counts failed logins per key and source and refuses locked ones with
    RESOURCE_EXHAUSTED (see the module doc)."""

    def __init__(
        self,
        max_failures: int,
        lockout_seconds: float,
        *,
        max_account_failures: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max(1, max_failures)
        self.lockout_seconds = lockout_seconds
        self.max_account_failures = max(0, max_account_failures)
        self._drain = (
            self.max_account_failures / (ACCOUNT_WINDOW_FACTOR * lockout_seconds)
            if lockout_seconds > 0
            else float("inf")
        )
        self._clock = clock
        self._max_keys = max_keys
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._accounts: OrderedDict[str, _Level] = OrderedDict()

    @staticmethod
    def _locked(remaining: float, where: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"too many failed logins for this account {where}; try again later",
            retry_after=max(1.0, round(remaining, 1)),
        )

    def check(self, keys: Iterable[str], source: str = "") -> None:
        """Raise ``ResourceExhausted`` (with the seconds left) if any key is locked for
        ``source`` or everywhere."""
        now = self._clock()
        for key in keys:
            state = self._states.get(f"{key}@{source}")
            if state is not None and state.locked_until > now:
                raise self._locked(state.locked_until - now, "from this address")
            account = self._accounts.get(key)
            if account is not None and account.locked_until > now:
                raise self._locked(account.locked_until - now, "from all addresses")

    def failure(self, keys: Iterable[str], source: str = "") -> None:
        """Count one failed login of each key from ``source``; lock what reaches a limit."""
        now = self._clock()
        for key in keys:
            name = f"{key}@{source}"
            state = self._states.pop(name, None) or _State()
            if state.locked_until and state.locked_until <= now:
                state = _State()  # the lock expired: start counting afresh
            state.failures += 1
            if state.failures >= self.max_failures:
                state.failures = 0
                state.locked_until = now + self.lockout_seconds
            self._states[name] = state
            if self.max_account_failures:
                self._account_failure(key, now)
        while len(self._states) > self._max_keys:
            self._states.popitem(last=False)
        while len(self._accounts) > self._max_keys:
            self._accounts.popitem(last=False)

    def _account_failure(self, key: str, now: float) -> None:
        account = self._accounts.pop(key, None) or _Level(updated=now)
        account.level = max(0.0, account.level - (now - account.updated) * self._drain) + 1
        account.updated = now
        if account.level >= self.max_account_failures:
            account.level = 0.0
            account.locked_until = now + self.lockout_seconds
        self._accounts[key] = account

    def success(self, keys: Iterable[str], source: str = "") -> None:
        """Forget the failures of each key from ``source``."""
        for key in keys:
            self._states.pop(f"{key}@{source}", None)
