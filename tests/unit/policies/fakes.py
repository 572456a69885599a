"""An in-memory ``PolicyStore``, held to the same behaviour suite as the SQL store
(``tests/integration/stores/test_policy_store.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from procall.errors import Unavailable
from procall.policies import ClientPolicy, SubjectKind


class MemoryPolicyStore:
    """Policies in a dict; ``down`` makes every call fail as an unreachable database does."""

    def __init__(self) -> None:
        self.rows: dict[tuple[SubjectKind, str], ClientPolicy] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable.backend("configuration database")

    async def get_many(self, subjects: Sequence[tuple[SubjectKind, str]]) -> list[ClientPolicy]:
        self._check()
        return [self.rows[s] for s in subjects if s in self.rows]

    async def compare_and_set(self, policy: ClientPolicy, expected_version: int) -> bool:
        self._check()
        key = (policy.kind, policy.subject_id)
        current = self.rows.get(key)
        if (current.version if current else 0) != expected_version:
            return False
        self.rows[key] = replace(policy, version=expected_version + 1)
        return True

    async def list_all(self) -> list[ClientPolicy]:
        self._check()
        return list(self.rows.values())
