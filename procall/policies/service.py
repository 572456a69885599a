"""The client policy use cases: administrators read and write them, servers ask what a
user's clients may use (from memory, refreshed in the background: a change reaches every
server within about ``cache_seconds``, at once on the server that wrote it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from procall.clock import Clock
from procall.errors import Aborted, InvalidArgument, PermissionDenied, Unavailable
from procall.policies.model import ClientFeature, ClientPolicy, SubjectKind, denied_for
from procall.policies.ports import GroupsOf, PolicyStore
from procall.validation import check_id, check_version

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
        groups_seconds: float = 60.0,
    ) -> None:
        """Every policy is read again ``cache_seconds`` after the last reading (one query for
        all of them: there are few); a user's groups ``groups_seconds`` after."""
        self._store = store
        self._groups = groups
        self._clock = clock
        self._monotonic = monotonic
        self._cache_seconds = cache_seconds
        self._groups_seconds = groups_seconds
        #: Every stored policy by subject, and until when it is fresh (None: never read).
        self._policies: dict[tuple[SubjectKind, str], ClientPolicy] | None = None
        self._policies_until = 0.0
        #: Whether some group's policy denies something (else no one's groups matter).
        self._groups_deny = False
        #: Each user's group ids, and until when they are fresh.
        self._group_ids: dict[str, tuple[tuple[str, ...], float]] = {}
        #: Background refreshes under way (their tasks kept alive here).
        self._refreshing: dict[str, asyncio.Task[None]] = {}

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
        check_version(expected_version, "expected_version")
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
        if self._policies is not None:  # this server sees its own change at once
            self._policies[(kind, subject_id)] = policy
            self._groups_deny = _groups_deny(self._policies)
        return policy

    async def list_all(self) -> list[ClientPolicy]:
        """Every stored policy, users first."""
        return sorted(await self._store.list_all(), key=lambda p: (p.kind, p.subject_id))

    # -- the servers' check ---------------------------------------------------------------

    async def denied(self, user_id: str) -> frozenset[ClientFeature]:
        """What ``user_id``'s clients may not use.

        Answered from memory: the policies and the user's groups are read again in the
        background once old (one refresh of each at a time), so that no request waits for
        the database or the Directory. Only the first question (of a server, of a user)
        waits. While either is away the last answers stand; a user never asked about is
        denied nothing. While no group's policy denies anything, users' groups change
        nothing and the Directory is not asked (a restarted server's thousands of
        reconnecting clients would each wait for it).
        """
        now = self._monotonic()
        if self._policies is None:
            # one reading for every first question at once (a restarted server's clients
            # all ask within a moment); a waiter that gives up does not cancel it
            self._in_background("policies", self._load_policies)
            await asyncio.shield(self._refreshing["policies"])
        elif self._policies_until <= now:
            self._in_background("policies", self._load_policies)
        if not self._groups_deny:
            return denied_for((self._policies or {}).get((SubjectKind.USER, user_id)), [])
        known = self._group_ids.get(user_id)
        if known is None:
            await self._load_groups(user_id)
        elif known[1] <= now:
            self._in_background(f"groups:{user_id}", lambda: self._load_groups(user_id))
        policies = self._policies or {}
        groups = self._group_ids.get(user_id, ((), 0.0))[0]
        return denied_for(
            policies.get((SubjectKind.USER, user_id)),
            [p for g in groups if (p := policies.get((SubjectKind.GROUP, g))) is not None],
        )

    def _in_background(self, key: str, refresh: Callable[[], Awaitable[None]]) -> None:
        if key in self._refreshing:
            return

        async def run() -> None:
            try:
                await refresh()
            finally:
                self._refreshing.pop(key, None)

        self._refreshing[key] = asyncio.create_task(run(), name=f"policy-{key}")

    async def _load_policies(self) -> None:
        try:
            found = await self._store.list_all()
        except Unavailable as error:
            _log.warning("client policies not read (%s): the last ones stand", error.message)
            self._policies = self._policies or {}
        else:
            self._policies = {(p.kind, p.subject_id): p for p in found}
        self._groups_deny = _groups_deny(self._policies)
        self._policies_until = self._monotonic() + self._cache_seconds

    async def _load_groups(self, user_id: str) -> None:
        known = self._group_ids.get(user_id)
        try:
            groups = tuple(await self._groups.group_ids_of(user_id))
        except Unavailable as error:
            _log.warning("groups of %s not read (%s)", user_id, error.message)
            groups = known[0] if known is not None else ()
        if len(self._group_ids) >= _CACHED_USERS:
            self._group_ids.clear()
        self._group_ids[user_id] = (groups, self._monotonic() + self._groups_seconds)

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


def _groups_deny(policies: dict[tuple[SubjectKind, str], ClientPolicy]) -> bool:
    """Whether some group's policy denies a feature."""
    return any(p.denied for (kind, _), p in policies.items() if kind is SubjectKind.GROUP)
