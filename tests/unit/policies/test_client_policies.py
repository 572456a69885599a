"""The client policy rules: what a user is denied, who overrides whom, versions, outages."""

from __future__ import annotations

import asyncio

import pytest

from procall.errors import Aborted, InvalidArgument, PermissionDenied
from procall.policies import ClientFeature, ClientPolicies, ClientPolicy, SubjectKind
from tests.unit.policies.fakes import MemoryPolicyStore

F = ClientFeature
USER, GROUP = SubjectKind.USER, SubjectKind.GROUP


class Groups:
    def __init__(self) -> None:
        self.of: dict[str, list[str]] = {"ann": ["sales", "night"], "ben": []}
        self.asked: list[str] = []

    async def group_ids_of(self, user_id: str) -> list[str]:
        self.asked.append(user_id)
        return self.of.get(user_id, [])


def _policies(store: MemoryPolicyStore, now: list[float]) -> ClientPolicies:
    return ClientPolicies(store, Groups(), lambda: 1000.0, lambda: now[0], cache_seconds=5.0)


async def test_a_user_is_denied_what_any_group_denies_unless_the_user_has_a_policy() -> None:
    store, now = MemoryPolicyStore(), [0.0]
    policies = _policies(store, now)
    await policies.set("root", GROUP, "sales", [F.VIDEO], 0)
    await policies.set("root", GROUP, "night", [F.CALLS], 0)
    assert await policies.denied("ann") == {F.VIDEO, F.CALLS}
    assert F.CHAT in await policies.allowed("ann")
    with pytest.raises(PermissionDenied) as refused:
        await policies.require("ann", F.CALLS)
    assert refused.value.reason == "FEATURE_DISABLED"
    assert refused.value.metadata == {"feature": "calls"}
    # her own policy overrides her groups' (an administrator allows her more)
    await policies.set("root", USER, "ann", [F.FILE_SHARING], 0)
    assert await policies.denied("ann") == {F.FILE_SHARING}
    await policies.require("ann", F.CALLS)
    assert await policies.denied("ben") == frozenset()


async def test_answers_are_kept_a_few_seconds_and_outages_keep_the_last_answer() -> None:
    store, now = MemoryPolicyStore(), [0.0]
    writer, reader = _policies(store, now), _policies(store, now)  # two servers
    assert await reader.denied("ben") == frozenset()
    await writer.set("root", USER, "ben", [F.CHAT], 0)
    assert await writer.denied("ben") == {F.CHAT}  # the writing server at once
    assert await reader.denied("ben") == frozenset()  # the other within its cache time
    now[0] = 6.0
    await reader.denied("ben")  # an old answer: returned at once, refreshed behind it
    await asyncio.sleep(0)
    assert await reader.denied("ben") == {F.CHAT}
    store.down = True
    now[0] = 12.0
    await reader.denied("ben")
    await asyncio.sleep(0)
    assert await reader.denied("ben") == {F.CHAT}  # the last answer stands
    assert await reader.denied("carl") == frozenset()  # unknown: nothing denied


async def test_versions_and_bad_input() -> None:
    policies = _policies(MemoryPolicyStore(), [0.0])
    first = await policies.set("root", USER, "ben", [F.CHAT], 0)
    assert (first.version, first.updated_by, first.update_time) == (1, "root", 1000.0)
    with pytest.raises(Aborted):
        await policies.set("root", USER, "ben", [], 0)
    assert (await policies.get(USER, "ben")).denied == {F.CHAT}
    assert (await policies.get(GROUP, "nobody")).version == 0
    with pytest.raises(InvalidArgument):
        await policies.set("root", None, "ben", [], 1)
    with pytest.raises(InvalidArgument):
        await policies.set("root", USER, "ben", [99], 1)
    with pytest.raises(InvalidArgument):
        await policies.set("root", USER, "", [], 1)
    # a version SQL cannot hold (the proto field is a uint64) is refused, not a crash
    for version in (-1, 2**63 - 1, 2**64 - 1):
        with pytest.raises(InvalidArgument):
            await policies.set("root", USER, "ben", [], version)


async def test_groups_are_read_only_once_a_group_policy_denies_something() -> None:
    store, now, groups = MemoryPolicyStore(), [0.0], Groups()
    policies = ClientPolicies(store, groups, lambda: 1000.0, lambda: now[0], cache_seconds=5.0)
    await policies.set("root", USER, "ben", [F.CHAT], 0)
    await policies.set("root", GROUP, "night", [], 0)
    # no group denies anything: a user's groups change nothing, the Directory is not asked
    assert await policies.denied("ann") == frozenset()
    assert await policies.denied("ben") == {F.CHAT}
    assert groups.asked == []
    await policies.set("root", GROUP, "night", [F.VIDEO], 1)
    assert await policies.denied("ann") == {F.VIDEO}
    assert groups.asked == ["ann"]


async def test_the_first_questions_at_once_share_one_reading_of_the_policies() -> None:
    class CountingStore(MemoryPolicyStore):
        readings = 0

        async def list_all(self) -> list[ClientPolicy]:
            CountingStore.readings += 1
            await asyncio.sleep(0.01)
            return await super().list_all()

    store = CountingStore()
    await store.compare_and_set(ClientPolicy(USER, "ben", frozenset({F.CHAT}), version=1), 0)
    policies = ClientPolicies(store, Groups(), lambda: 1000.0, lambda: 0.0, cache_seconds=5.0)
    answers = await asyncio.gather(*(policies.denied("ben") for _ in range(50)))
    assert answers == [{F.CHAT}] * 50
    assert CountingStore.readings == 1
