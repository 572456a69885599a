"""In-memory fakes at the configuration's seams.

``MemoryConfigStore`` is held to the same behaviour suite as ``SqlConfigStore``
(``tests/integration/stores/test_config_store.py``).
"""

from __future__ import annotations

import asyncio

from procall.config import PropertyKey, PropertyValue, Scope
from procall.errors import Aborted, FailedPrecondition, Unavailable


class MemoryConfigStore:
    """A ``ConfigStore`` in a dict; ``down`` makes every call ``Unavailable``."""

    def __init__(self) -> None:
        self.rows: dict[PropertyKey, PropertyValue] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable.backend("configuration database")

    async def get(self, key: PropertyKey) -> PropertyValue | None:
        self._check()
        await asyncio.sleep(0)
        return self.rows.get(key)

    async def values(self, scope: Scope, server_id: str) -> list[PropertyValue]:
        self._check()
        await asyncio.sleep(0)
        found = [v for k, v in self.rows.items() if k.scope is scope and k.server_id == server_id]
        return sorted(found, key=lambda v: v.key.name)

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
        self._check()
        await asyncio.sleep(0)  # a real store yields too: races are possible
        current = self.rows.get(key)
        version = current.version if current else 0
        if version != expected_version:
            raise Aborted(
                f"{key.name} is at version {version}",
                reason="STALE_VERSION",
                metadata={"current_version": str(version), "resource": key.resource},
            )
        stored_fencing = current.fencing if current else 0
        if fencing is not None and current is not None and stored_fencing > fencing:
            raise Aborted(
                f"{key.name} was written under a newer lease",
                reason="STALE_VERSION",
                metadata={"fencing": str(stored_fencing), "resource": key.resource},
            )
        written = PropertyValue(
            key,
            value,
            version + 1,
            update_time,
            updated_by,
            stored_fencing if fencing is None else fencing,
        )
        self.rows[key] = written
        return written


class FakeLeases:
    """A ``LeaseCheck`` over a dict: resource -> (holder, lease id, fencing)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, str, int]] = {}

    async def fencing_for(self, resource: str, user_id: str, lease_id: str) -> int | None:
        lease = self.held.get(resource)
        if lease is None:
            if lease_id:
                raise FailedPrecondition("no such lease", reason="LEASE_HELD")
            return None
        holder, live_id, fencing = lease
        if holder != user_id:
            raise FailedPrecondition(
                "held by another admin", reason="LEASE_HELD", metadata={"holder_user_id": holder}
            )
        if lease_id != live_id:
            raise FailedPrecondition("not the live lease", reason="LEASE_HELD")
        return fencing


class RecordingNotifier:
    """A ``ChangeNotifier`` that remembers what it was told."""

    def __init__(self) -> None:
        self.changes: list[tuple[PropertyKey, int]] = []

    async def changed(self, key: PropertyKey, version: int) -> None:
        self.changes.append((key, version))
