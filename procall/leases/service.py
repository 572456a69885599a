"""The edit-lease use cases: acquire, renew, release, list, and the check before a write.

Who may call them is the caller's concern (an administrator's session); these rules only
decide between administrators. A resource leased by one administrator is refused to the
others with FAILED_PRECONDITION (reason LEASE_HELD) naming the holder; the holder taking
it again renews its lease. Every refusal of another's lease carries the holder in its
``ErrorInfo`` metadata (``holder_user_id``, ``resource``, ``since``), so a tool can show
"being edited by X since Y".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from procall.errors import FailedPrecondition, InvalidArgument, NotFound
from procall.leases.model import (
    DEFAULT_LEASE_TTL,
    MAX_LEASE_TTL,
    MIN_LEASE_TTL,
    EditLease,
    check_resource,
    new_lease_id,
    resource_of_lease,
)
from procall.leases.ports import LeaseStore
from procall.validation import check_id

__all__ = ["EditLeases", "lease_held"]

_REASON = "LEASE_HELD"


def _since(lease: EditLease) -> str:
    return datetime.fromtimestamp(lease.acquire_time, UTC).isoformat(timespec="seconds")


def lease_held(lease: EditLease) -> FailedPrecondition:
    """The refusal of a write or lease while ``lease`` (someone else's) is live."""
    return FailedPrecondition(
        f"{lease.resource} is being edited by administrator {lease.holder_user_id} "
        f"(since {_since(lease)}, on {lease.server_id or 'an unknown server'})",
        reason=_REASON,
        metadata={
            "holder_user_id": lease.holder_user_id,
            "resource": lease.resource,
            "since": _since(lease),
            "server_id": lease.server_id,
        },
    )


def _not_live(resource: str, lease_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"lease {lease_id} is not (or no longer) the live lease of {resource}; "
        "acquire the lease again and re-read before writing",
        reason=_REASON,
        metadata={"resource": resource, "lease_id": lease_id},
    )


def _ttl(ttl: float | None, field: str = "ttl_seconds") -> float:
    if ttl is None or ttl == 0:
        return DEFAULT_LEASE_TTL
    if not MIN_LEASE_TTL <= ttl <= MAX_LEASE_TTL:
        raise InvalidArgument.field(
            field, f"must be between {MIN_LEASE_TTL:g} and {MAX_LEASE_TTL:g} seconds"
        )
    return float(ttl)


class EditLeases:
    """Edit leases of configuration properties, users and groups, system-wide.

    ``server_id`` is the server the acquisitions go through (shown to other admins);
    ``clock`` gives the acquire and expire times (the store counts the lifetime itself).
    """

    def __init__(
        self,
        store: LeaseStore,
        server_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._server_id = server_id
        self._clock = clock

    async def acquire(self, admin: str, resource: str, ttl: float | None = None) -> EditLease:
        """Take the lease of ``resource`` for ``admin`` for ``ttl`` seconds (default 60),
        or renew it when ``admin`` holds it already. LEASE_HELD when another admin does."""
        check_id(admin, "holder_user_id")
        check_resource(resource)
        seconds = _ttl(ttl)
        now = self._clock()
        candidate = EditLease(
            lease_id=new_lease_id(resource),
            resource=resource,
            holder_user_id=admin,
            server_id=self._server_id,
            acquire_time=now,
            expire_time=now + seconds,
            fencing=0,
        )
        lease = await self._store.acquire(candidate, _ms(seconds))
        if lease.holder_user_id != admin:
            raise lease_held(lease)
        return lease

    async def _own(self, admin: str, lease_id: str) -> EditLease:
        """The live lease ``lease_id``, held by ``admin``."""
        check_id(admin, "holder_user_id")
        if not lease_id:
            raise InvalidArgument.field("lease_id", "is required")
        resource = resource_of_lease(lease_id)
        if resource is None:
            raise NotFound(f"there is no lease {lease_id}")
        lease = await self._store.get(resource)
        if lease is not None and lease.holder_user_id != admin:
            raise lease_held(lease)
        if lease is None or lease.lease_id != lease_id:
            raise NotFound(
                f"lease {lease_id} of {resource} has expired or was released; "
                "acquire the lease again",
                metadata={"resource": resource},
            )
        return lease

    async def renew(self, admin: str, lease_id: str, ttl: float | None = None) -> EditLease:
        """Extend ``admin``'s live lease to ``ttl`` seconds from now (default 60).

        NOT_FOUND when it expired or was released (and nobody else took the resource);
        LEASE_HELD when another admin holds the resource now."""
        seconds = _ttl(ttl)
        lease = await self._own(admin, lease_id)
        renewed = await self._store.renew(
            lease.resource, lease_id, self._clock() + seconds, _ms(seconds)
        )
        if renewed is None:  # lapsed between the two steps
            raise NotFound(f"lease {lease_id} of {lease.resource} has expired; acquire it again")
        return renewed

    async def release(self, admin: str, lease_id: str) -> None:
        """Give ``admin``'s live lease back (NOT_FOUND / LEASE_HELD as for ``renew``)."""
        lease = await self._own(admin, lease_id)
        await self._store.release(lease.resource, lease_id)

    async def list(self) -> list[EditLease]:
        """Every live lease, by resource: who edits what, since when, on which server."""
        return sorted(await self._store.live(), key=lambda lease: lease.resource)

    async def get(self, resource: str) -> EditLease | None:
        """The live lease of ``resource``, if any."""
        return await self._store.get(check_resource(resource))

    async def fencing_for(self, resource: str, user_id: str, lease_id: str) -> int | None:
        """The fencing number to write under: of ``lease_id`` when it is the live lease of
        ``resource`` held by ``user_id``; None when ``lease_id`` is empty and nobody holds a
        lease on ``resource``. Raises FailedPrecondition (reason LEASE_HELD, metadata
        holder_user_id) when another admin holds it, and FailedPrecondition (reason
        LEASE_HELD) when ``lease_id`` is not (or no longer) the live lease of ``resource``.

        With an empty ``lease_id`` while ``user_id`` itself holds the live lease, the number
        of that lease is returned: the holder writes under its own lease.
        """
        check_resource(resource)
        lease = await self._store.get(resource)
        if lease is not None and lease.holder_user_id != user_id:
            raise lease_held(lease)
        if not lease_id:
            return lease.fencing if lease is not None else None
        if lease is None or lease.lease_id != lease_id:
            raise _not_live(resource, lease_id)
        return lease.fencing


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
