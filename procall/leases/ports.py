"""What the edit leases need from a store, and what writers need from the leases."""

from __future__ import annotations

from typing import Protocol

from procall.leases.model import EditLease

__all__ = ["LeaseGuard", "LeaseStore"]


class LeaseStore(Protocol):
    """The live leases, shared by every server (Redis).

    Liveness is the store's: a lease is live until its lifetime (``ttl_ms``, counted by the
    store) lapses or it is released. Each operation is atomic.
    """

    async def acquire(self, candidate: EditLease, ttl_ms: int) -> EditLease:
        """Take the lease of ``candidate.resource`` for ``candidate.holder_user_id`` unless
        someone else holds it, and return the live lease afterwards:

        - nobody held it: ``candidate`` with a fencing number higher than that of any
          earlier lease of the resource (the candidate's own ``fencing`` is ignored);
        - the same holder held it: that lease, renewed to ``candidate.expire_time`` (same id,
          same fencing number);
        - another holder holds it: that lease, unchanged.
        """
        ...

    async def renew(
        self, resource: str, lease_id: str, expire_time: float, ttl_ms: int
    ) -> EditLease | None:
        """Extend the live lease ``lease_id`` of ``resource``; None when it is not live."""
        ...

    async def release(self, resource: str, lease_id: str) -> bool:
        """End the live lease ``lease_id`` of ``resource``; False when it was not live."""
        ...

    async def get(self, resource: str) -> EditLease | None:
        """The live lease of ``resource``, if any."""
        ...

    async def live(self) -> list[EditLease]:
        """Every live lease."""
        ...


class LeaseGuard(Protocol):
    """What a writer of leased resources asks before it writes (``EditLeases`` is one)."""

    async def fencing_for(self, resource: str, user_id: str, lease_id: str) -> int | None:
        """The fencing number to write under; raises ``FailedPrecondition`` (reason
        LEASE_HELD) when ``user_id`` may not write ``resource`` now (see
        ``EditLeases.fencing_for``)."""
        ...
