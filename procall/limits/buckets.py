"""Token buckets: request rates per key (a user, a network source).

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second; a
request takes one. An empty bucket answers how long until the next token, which
the caller sends back as ``RetryInfo``. ``KeyedBuckets`` keeps one bucket per
key in a bounded LRU map, so that a flood of distinct keys costs bounded memory
(a forgotten key starts again with a full bucket, which only ever errs towards
serving).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["KeyedBuckets", "TokenBucket"]


class TokenBucket:
    """One bucket of ``burst`` tokens refilled at ``rate`` tokens per second."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 when taken, else the seconds until they are there."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (cost - self.tokens) / self.rate


class KeyedBuckets:
    """A bucket per key, the least recently used forgotten beyond ``max_keys``."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def set_rate(self, rate: float, burst: float) -> None:
        """Use ``rate`` and ``burst`` from now on, for the buckets held too (a bucket keeps
        its tokens, at most the new burst)."""
        self.rate = rate
        self.burst = burst
        for bucket in self._buckets.values():
            bucket.rate = rate
            bucket.burst = max(1.0, burst)
            bucket.tokens = min(bucket.tokens, bucket.burst)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take from ``key``'s bucket: 0.0 when allowed, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)
