"""What the client policies need from the rest of the system."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from procall.policies.model import ClientPolicy, SubjectKind

__all__ = ["GroupsOf", "PolicyStore"]


class PolicyStore(Protocol):
    """The stored policies (SQL, the configuration database)."""

    async def get_many(self, subjects: Sequence[tuple[SubjectKind, str]]) -> list[ClientPolicy]:
        """The stored policies of these subjects (subjects without one are left out)."""
        ...

    async def compare_and_set(self, policy: ClientPolicy, expected_version: int) -> bool:
        """Store ``policy`` (with version ``expected_version + 1``) if the stored version is
        still ``expected_version`` (0: none stored yet); False when another write came first."""
        ...

    async def list_all(self) -> list[ClientPolicy]:
        """Every stored policy."""
        ...


class GroupsOf(Protocol):
    """The groups a user belongs to (the Directory)."""

    async def group_ids_of(self, user_id: str) -> Sequence[str]:
        """The ids of the user's groups (empty for a user the Directory does not know)."""
        ...
