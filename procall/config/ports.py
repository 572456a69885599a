"""What the configuration needs from the rest of the system (small Protocols)."""

from __future__ import annotations

from typing import Protocol

from procall.config.model import PropertyKey, PropertyValue, Scope

__all__ = ["ChangeNotifier", "ConfigStore", "LeaseCheck"]


class ConfigStore(Protocol):
    """Property values in the configuration database (SQL).

    Every method raises ``Unavailable`` when the database does not answer: a write is
    then refused, never queued and never lost.
    """

    async def get(self, key: PropertyKey) -> PropertyValue | None:
        """The stored value of ``key``; None when it was never written."""
        ...

    async def values(self, scope: Scope, server_id: str) -> list[PropertyValue]:
        """Every stored value of ``scope`` (for LOCAL: of ``server_id``), by name."""
        ...

    async def compare_and_set(
        self,
        key: PropertyKey,
        value: str,
        *,
        expected_version: int,
        updated_by: str,
        update_time: float,
        fencing: int | None,
    ) -> PropertyValue:
        """Write ``value`` as version ``expected_version + 1`` in one atomic step.

        ``expected_version`` 0 means the row must not exist yet. Raises ``Aborted``
        (reason STALE_VERSION, metadata ``current_version``) when the stored version is
        another one, and ``Aborted`` (reason STALE_VERSION, metadata ``fencing``) when
        ``fencing`` is lower than the highest fencing number the row was written under
        (the writer's lease was taken over since). The row keeps the highest fencing
        number it was written under.
        """
        ...


class LeaseCheck(Protocol):
    """The admin edit leases (``procall.leases``), as the configuration sees them."""

    async def fencing_for(self, resource: str, user_id: str, lease_id: str) -> int | None:
        """The fencing number to write under: of ``lease_id`` when it is the live lease of
        ``resource`` held by ``user_id``; None when ``lease_id`` is empty and nobody holds a
        lease on ``resource``. Raises FailedPrecondition (reason LEASE_HELD, metadata
        holder_user_id) when another admin holds it, and FailedPrecondition (reason
        LEASE_HELD) when ``lease_id`` is not (or no longer) the live lease of ``resource``."""
        ...


class ChangeNotifier(Protocol):
    """Tells every server that a property changed (Redis pub/sub)."""

    async def changed(self, key: PropertyKey, version: int) -> None:
        """Announce ``key``'s new ``version``; best effort (servers also re-read
        periodically), never raising."""
        ...
