"""The Directory honours the administrators' edit leases of users and groups.

While one administrator holds the lease of ``user/<id>`` (or ``group/<id>``), another
administrator's write of that user (or group) is refused with FAILED_PRECONDITION
(reason LEASE_HELD) naming the holder; the holder's own writes, and writes of resources
nobody leased, pass. The Directory's requests carry no lease id, so it asks the leases
with an empty one (``fencing_for(resource, caller, "")``).

While Redis (where the leases live) is unreachable the write passes with a warning: no
administrator can take or see a lease then either, and the user database must not stop
taking writes because the volatile state is away (DESIGN §4: Redis down stops the
cross-server features only).
"""

from __future__ import annotations

import logging

from procall.errors import InvalidArgument, Unavailable
from procall.leases import LeaseGuard
from procall.servers.runtime.auth import current_claims_or_none

__all__ = ["LeaseCheck"]

_log = logging.getLogger(__name__)


class LeaseCheck:
    """Refuses a write of a user or group leased by another administrator."""

    def __init__(self, leases: LeaseGuard | None) -> None:
        self._leases = leases

    async def user(self, user_id: str) -> None:
        """Refuse the caller's write of user ``user_id`` while someone else leases it."""
        await self._check(f"user/{user_id}" if user_id else "")

    async def group(self, group_id: str) -> None:
        """Refuse the caller's write of group ``group_id`` while someone else leases it."""
        await self._check(f"group/{group_id}" if group_id else "")

    async def _check(self, resource: str) -> None:
        if self._leases is None or not resource:
            return  # no id: the write's own validation answers
        claims = current_claims_or_none()
        caller = claims.user_id if claims is not None else ""  # the operator holds none
        try:
            await self._leases.fencing_for(resource, caller, "")
        except InvalidArgument:
            return  # not a valid id: the write's own validation answers
        except Unavailable:
            _log.warning("edit leases unreachable; %s written without a lease check", resource)
