"""The client policy use cases: administrators read and write them, servers ask what a
user's clients may use (answers kept for a few seconds: a change reaches every server
within ``cache_seconds``, at once on the server that wrote it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from procall.clock import Clock
from procall.errors import Aborted, InvalidArgument, PermissionDenied, Unavailable
from procall.policies.model import ClientFeature, ClientPolicy, SubjectKind, denied_for
from procall.policies.ports import GroupsOf, PolicyStore
from procall.validation import check_id

__all__ = ["ClientPolicies"]

_log = logging.getLogger(__name__)
#: Users whose answers are kept at most.
_CACHED_USERS = 100_000


class ClientPolicies:
    """Administrators' client policies, and the check the servers make before a feature."""

    def __init__(
        self,
        store: PolicyStore,
        groups: GroupsOf,
        clock: Clock,
        monotonic: Callable[[], float],
        cache_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._groups = groups
        self._clock = clock
        self._monotonic = monotonic
        self._cache_seconds = cache_seconds
        self._denied: dict[str, tuple[frozenset[ClientFeature], float]] = {}

    # -- administrators -----------------------------------------------------------------

    async def get(self, kind: SubjectKind | None, subject_id: str) -> ClientPolicy:
        """A subject's policy (nothing denied, version 0, when none was set)."""
        kind, subject_id = _subject(kind, subject_id)
        found = await self._store.get_many([(kind, subject_id)])
        return found[0] if found else ClientPolicy(kind, subject_id)

    async def set(
        self,
        admin: str,
        kind: SubjectKind | None,
        subject_id: str,
        denied: Iterable[int],
        expected_version: int,
    ) -> ClientPolicy:
        """Replace a subject's policy over ``expected_version`` (a stale one: ABORTED)."""
        kind, subject_id = _subject(kind, subject_id)
        features = set()
        for value in denied:
            try:
                features.add(ClientFeature(value))
            except ValueError:
                raise InvalidArgument.field(
                    "policy.denied_features", f"unknown feature {value}"
                ) from None
        if expected_version < 0:
            raise InvalidArgument.field("expected_version", "must not be negative")
        policy = ClientPolicy(
            kind,
            subject_id,
            frozenset(features),
            version=expected_version + 1,
            update_time=self._clock(),
            updated_by=admin,
        )
        if not await self._store.compare_and_set(policy, expected_version):
            raise Aborted(
                f"the policy of {subject_id} changed since version {expected_version}; "
                "read it again",
                metadata={"subject_id": subject_id},
            )
        self._denied.clear()  # this server sees its own change at once
        return policy

    async def list_all(self) -> list[ClientPolicy]:
        """Every stored policy, users first."""
        return sorted(await self._store.list_all(), key=lambda p: (p.kind, p.subject_id))

    # -- the servers' check ---------------------------------------------------------------

    async def denied(self, user_id: str) -> frozenset[ClientFeature]:
        """What ``user_id``'s clients may not use."""
        now = self._monotonic()
        cached = self._denied.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            groups = list(await self._groups.group_ids_of(user_id))
            subjects = [(SubjectKind.USER, user_id)] + [(SubjectKind.GROUP, g) for g in groups]
            policies = await self._store.get_many(subjects)
        except Unavailable as error:
            # the rest keeps working while the Directory or the configuration database is
            # away: the last answer known for the user stands, else nothing is denied
            _log.warning("client policy of %s unknown (%s)", user_id, error.message)
            known = cached[0] if cached is not None else frozenset()
            self._denied[user_id] = (known, now + self._cache_seconds)
            return known
        own = next((p for p in policies if p.kind is SubjectKind.USER), None)
        denied = denied_for(own, [p for p in policies if p.kind is SubjectKind.GROUP])
        if len(self._denied) >= _CACHED_USERS:
            self._denied.clear()
        self._denied[user_id] = (denied, now + self._cache_seconds)
        return denied

    async def allowed(self, user_id: str) -> list[ClientFeature]:
        """What ``user_id``'s clients may use (what the client is told)."""
        denied = await self.denied(user_id)
        return [f for f in ClientFeature if f not in denied]

    async def require(self, user_id: str, feature: ClientFeature) -> None:
        """PERMISSION_DENIED (FEATURE_DISABLED) when a policy denies ``feature`` to the user."""
        if feature in await self.denied(user_id):
            name = feature.name.lower()
            raise PermissionDenied(
                f"your administrator has disabled {name.replace('_', ' ')} for you",
                reason="FEATURE_DISABLED",
                metadata={"feature": name},
            )


def _subject(kind: SubjectKind | None, subject_id: str) -> tuple[SubjectKind, str]:
    if kind is None:
        raise InvalidArgument.field("policy.subject_kind", "must be USER or GROUP")
    return kind, check_id(subject_id, "policy.subject_id")
