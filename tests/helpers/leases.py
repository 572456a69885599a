"""An in-memory ``LeaseStore`` for unit tests of the lease rules.

It is held to the behaviour suite the Redis store passes
(``tests/integration/stores/test_lease_store.py``), so the rules' unit tests stand on
the same ground as the real thing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from procall.leases import EditLease

__all__ = ["MemoryLeaseStore"]


class MemoryLeaseStore:
    """Live leases in a dict; the lifetime counted on ``clock``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[EditLease, float]] = {}
        self._fences: dict[str, int] = {}

    def _live(self, resource: str) -> EditLease | None:
        entry = self._leases.get(resource)
        if entry is None:
            return None
        if self._clock() >= entry[1]:
            del self._leases[resource]
            return None
        return entry[0]

    def _deadline(self, ttl_ms: int) -> float:
        return self._clock() + ttl_ms / 1000

    async def acquire(self, candidate: EditLease, ttl_ms: int) -> EditLease:
        """Take, renew (same holder) or report (another holder) the lease."""
        resource = candidate.resource
        current = self._live(resource)
        if current is not None and current.holder_user_id != candidate.holder_user_id:
            return current
        if current is not None:
            lease = dataclasses.replace(current, expire_time=candidate.expire_time)
        else:
            self._fences[resource] = self._fences.get(resource, 0) + 1
            lease = dataclasses.replace(candidate, fencing=self._fences[resource])
        self._leases[resource] = (lease, self._deadline(ttl_ms))
        return lease

    async def renew(
        self, resource: str, lease_id: str, expire_time: float, ttl_ms: int
    ) -> EditLease | None:
        """Extend the live lease ``lease_id``."""
        current = self._live(resource)
        if current is None or current.lease_id != lease_id:
            return None
        lease = dataclasses.replace(current, expire_time=expire_time)
        self._leases[resource] = (lease, self._deadline(ttl_ms))
        return lease

    async def release(self, resource: str, lease_id: str) -> bool:
        """End the live lease ``lease_id``."""
        current = self._live(resource)
        if current is None or current.lease_id != lease_id:
            return False
        del self._leases[resource]
        return True

    async def get(self, resource: str) -> EditLease | None:
        """The live lease of ``resource``."""
        return self._live(resource)

    async def live(self) -> list[EditLease]:
        """Every live lease."""
        return [lease for r in list(self._leases) if (lease := self._live(r)) is not None]
