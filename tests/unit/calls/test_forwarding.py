"""Forwarding over fakes: checks of the rules, the calls.forward delegation, routing."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from procall.calls.forwarding import (
    DEFAULT_NO_ANSWER_TIMEOUT,
    MAX_HOPS,
    ForwardingCondition,
    ForwardingRule,
    ForwardingService,
    NoAnswer,
    Route,
    check_rules,
)
from procall.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from tests.unit.calls.forwarding_fakes import (
    FakeDelegations,
    FakeReachability,
    FakeUsers,
    MemoryForwardingStore,
)

ALWAYS = ForwardingCondition.ALWAYS
BUSY = ForwardingCondition.BUSY
NO_ANSWER = ForwardingCondition.NO_ANSWER
OFFLINE = ForwardingCondition.OFFLINE
USERS = ["alice", "bob", "carol", "dave", "erin", *(f"u{n}" for n in range(10))]


@dataclass
class World:
    store: MemoryForwardingStore
    delegations: FakeDelegations
    service: ForwardingService


@pytest.fixture
def world() -> World:
    store = MemoryForwardingStore()
    delegations = FakeDelegations()
    return World(store, delegations, ForwardingService(store, delegations, FakeUsers(USERS)))


def rule(
    condition: ForwardingCondition,
    target: str,
    timeout: float = DEFAULT_NO_ANSWER_TIMEOUT,
    *,
    enabled: bool = True,
) -> ForwardingRule:
    return ForwardingRule(condition, target, no_answer_timeout=timeout, enabled=enabled)


def violated_field(error: InvalidArgument | FailedPrecondition) -> str:
    assert len(error.violations) == 1
    return error.violations[0].field


# -- checks of the rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ([rule(ALWAYS, "bob")] * 11, "rules"),
        ([rule(ForwardingCondition.UNSPECIFIED, "bob")], "rules[0].condition"),
        ([rule(BUSY, "bob"), rule(BUSY, "carol")], "rules[1].condition"),
        ([rule(BUSY, "bob"), rule(ALWAYS, "carol", enabled=False), rule(ALWAYS, "dave")],
         "rules[2].condition"),
        ([rule(ALWAYS, "")], "rules[0].target_user_id"),
        ([rule(BUSY, "bob"), rule(ALWAYS, "x" * 65)], "rules[1].target_user_id"),
        ([rule(ALWAYS, "b\x00b")], "rules[0].target_user_id"),
        ([rule(BUSY, "bob"), rule(OFFLINE, "carol"), rule(ALWAYS, "alice")],
         "rules[2].target_user_id"),
        ([rule(NO_ANSWER, "bob", 4.99)], "rules[0].no_answer_timeout"),
        ([rule(NO_ANSWER, "bob", 120.01)], "rules[0].no_answer_timeout"),
        ([rule(NO_ANSWER, "bob", -20.0)], "rules[0].no_answer_timeout"),
        ([rule(NO_ANSWER, "bob", math.nan)], "rules[0].no_answer_timeout"),
        ([rule(BUSY, "bob"), rule(NO_ANSWER, "bob", math.inf)], "rules[1].no_answer_timeout"),
    ],
)  # fmt: skip
async def test_invalid_rules_are_refused_naming_the_field(
    world: World, rules: list[ForwardingRule], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await world.service.set("alice", "alice", rules)
    assert violated_field(caught.value) == field
    assert caught.value.reason == "INVALID_FIELD"
    assert world.store.rules == {}


async def test_an_unknown_target_is_refused(world: World) -> None:
    await world.service.set("alice", "", [rule(BUSY, "bob")])
    with pytest.raises(InvalidArgument) as caught:
        await world.service.set("alice", "", [rule(BUSY, "bob"), rule(OFFLINE, "nobody")])
    assert violated_field(caught.value) == "rules[1].target_user_id"
    assert "nobody" in caught.value.message
    assert world.store.rules == {"alice": [rule(BUSY, "bob")]}


@pytest.mark.parametrize("timeout", [5.0, 20.0, 37.5, 120.0])
def test_no_answer_timeouts_in_range_are_kept(timeout: float) -> None:
    assert check_rules("alice", [rule(NO_ANSWER, "bob", timeout)]) == [
        rule(NO_ANSWER, "bob", timeout)
    ]


def test_other_conditions_ignore_the_timeout() -> None:
    checked = check_rules("alice", [rule(ALWAYS, "bob", 0.0), rule(BUSY, "carol", math.nan)])
    assert [r.no_answer_timeout for r in checked] == [DEFAULT_NO_ANSWER_TIMEOUT] * 2


async def test_rules_are_stored_in_order_and_read_back(world: World) -> None:
    rules = [
        rule(NO_ANSWER, "carol", 15.0),
        rule(ALWAYS, "bob", enabled=False),
        rule(OFFLINE, "dave"),
        rule(BUSY, "carol"),
    ]
    assert await world.service.set("alice", "", rules) == rules
    assert await world.service.get("alice") == rules
    assert await world.service.get("alice", "alice") == rules
    assert await world.service.get("bob") == []


async def test_an_empty_list_removes_the_rules(world: World) -> None:
    await world.service.set("alice", "", [rule(ALWAYS, "bob")])
    assert await world.service.set("alice", "", []) == []
    assert await world.service.get("alice") == []


# -- the calls.forward delegation --------------------------------------------------------------


async def test_another_users_rules_need_the_delegation(world: World) -> None:
    await world.service.set("bob", "", [rule(BUSY, "carol")])
    with pytest.raises(PermissionDenied) as caught:
        await world.service.get("alice", "bob")
    assert caught.value.metadata == {"user_id": "bob", "scope": "calls.forward"}
    with pytest.raises(PermissionDenied):
        await world.service.set("alice", "bob", [rule(ALWAYS, "alice")])
    # refused before the rules are looked at: a non-delegate learns nothing from errors
    with pytest.raises(PermissionDenied):
        await world.service.set("alice", "bob", [rule(ALWAYS, "bob")])
    assert world.store.rules == {"bob": [rule(BUSY, "carol")]}


async def test_a_delegate_reads_and_sets_the_principals_rules(world: World) -> None:
    world.delegations.grants.add(("alice", "bob"))
    assert await world.service.get("alice", "bob") == []
    assert await world.service.set("alice", "bob", [rule(ALWAYS, "alice")]) == [
        rule(ALWAYS, "alice")
    ]
    assert world.store.rules == {"bob": [rule(ALWAYS, "alice")]}
    # the grant is one way
    with pytest.raises(PermissionDenied):
        await world.service.get("bob", "alice")


async def test_a_bad_user_id_is_refused(world: World) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await world.service.get("alice", "x" * 65)
    assert violated_field(caught.value) == "user_id"


# -- loops refused when rules are set ---------------------------------------------------------


@pytest.mark.parametrize(
    ("others", "loop"),
    [
        ({"bob": [rule(ALWAYS, "alice")]}, "alice -> bob -> alice"),
        (
            {"bob": [rule(BUSY, "dave"), rule(ALWAYS, "carol")], "carol": [rule(ALWAYS, "alice")]},
            "alice -> bob -> carol -> alice",
        ),
    ],
)
async def test_an_always_loop_back_to_the_user_is_refused(
    world: World, others: dict[str, list[ForwardingRule]], loop: str
) -> None:
    world.store.rules.update(others)
    with pytest.raises(FailedPrecondition) as caught:
        await world.service.set("alice", "", [rule(BUSY, "dave"), rule(ALWAYS, "bob")])
    assert violated_field(caught.value) == "rules[1].target_user_id"
    assert caught.value.metadata == {"user_id": "alice", "loop": loop}
    assert "alice" not in world.store.rules


@pytest.mark.parametrize(
    ("mine", "others"),
    [
        # the other end's ALWAYS is off
        ([rule(ALWAYS, "bob")], {"bob": [rule(ALWAYS, "alice", enabled=False)]}),
        # only conditional rules lead back: decided per call
        ([rule(ALWAYS, "bob")], {"bob": [rule(BUSY, "alice"), rule(NO_ANSWER, "alice")]}),
        # the user's own ALWAYS is off
        ([rule(ALWAYS, "bob", enabled=False)], {"bob": [rule(ALWAYS, "alice")]}),
        # a loop the user is not part of
        ([rule(ALWAYS, "bob")], {"bob": [rule(ALWAYS, "carol")], "carol": [rule(ALWAYS, "bob")]}),
    ],
)
async def test_other_rules_back_to_the_user_are_allowed(
    world: World, mine: list[ForwardingRule], others: dict[str, list[ForwardingRule]]
) -> None:
    world.store.rules.update(others)
    assert await world.service.set("alice", "", mine) == mine


async def test_the_loop_check_reads_a_bounded_chain(world: World) -> None:
    chain = [f"u{n}" for n in range(10)]
    for user, target in zip(chain, chain[1:], strict=False):
        world.store.rules[user] = [rule(ALWAYS, target)]
    world.store.reads.clear()
    await world.service.set("alice", "", [rule(ALWAYS, "u0")])
    assert len(world.store.reads) <= MAX_HOPS + 1


# -- routing ------------------------------------------------------------------------------------


async def test_a_callee_without_rules_rings_themself(world: World) -> None:
    state = FakeReachability(offline=["bob"], busy=["bob"])
    assert await world.service.route("bob", state) == Route("bob")
    assert state.asked == []


async def test_always_forwards_without_asking_the_state(world: World) -> None:
    world.store.rules["bob"] = [rule(BUSY, "dave"), rule(OFFLINE, "erin"), rule(ALWAYS, "carol")]
    state = FakeReachability(offline=["bob"])
    assert await world.service.route("bob", state) == Route("carol", ("bob",))
    assert "bob" not in state.asked


@pytest.mark.parametrize(
    ("offline", "busy", "target"),
    [
        (False, False, "bob"),
        (True, False, "erin"),
        (False, True, "dave"),
        # offline wins over busy (a stale busy of a user who logged off)
        (True, True, "erin"),
    ],
)
async def test_offline_and_busy_follow_the_state(
    world: World, offline: bool, busy: bool, target: str
) -> None:
    world.store.rules["bob"] = [rule(BUSY, "dave"), rule(OFFLINE, "erin")]
    state = FakeReachability(offline=["bob"] if offline else [], busy=["bob"] if busy else [])
    route = await world.service.route("bob", state)
    assert route.target_user_id == target
    assert route.forwarded_from == (() if target == "bob" else ("bob",))
    assert state.asked == ["bob"]


async def test_disabled_rules_do_nothing(world: World) -> None:
    world.store.rules["bob"] = [
        rule(ALWAYS, "carol", enabled=False),
        rule(OFFLINE, "dave", enabled=False),
        rule(BUSY, "erin", enabled=False),
        rule(NO_ANSWER, "carol", enabled=False),
    ]
    state = FakeReachability(offline=["bob"], busy=["bob"])
    assert await world.service.route("bob", state) == Route("bob")
    assert state.asked == []


async def test_chains_are_followed(world: World) -> None:
    world.store.rules["bob"] = [rule(ALWAYS, "carol")]
    world.store.rules["carol"] = [rule(OFFLINE, "dave")]
    world.store.rules["dave"] = [rule(BUSY, "erin")]
    state = FakeReachability(offline=["carol"], busy=["dave"])
    assert await world.service.route("bob", state, caller="alice") == Route(
        "erin", ("bob", "carol", "dave")
    )


async def test_a_loop_rings_the_last_user_before_it(world: World) -> None:
    world.store.rules["bob"] = [rule(ALWAYS, "carol")]
    world.store.rules["carol"] = [rule(BUSY, "dave")]
    world.store.rules["dave"] = [rule(OFFLINE, "bob")]
    state = FakeReachability(offline=["dave"], busy=["carol"])
    route = await world.service.route("bob", state, caller="alice")
    assert route == Route("dave", ("bob", "carol"), loop_detected=True)


async def test_the_call_is_not_forwarded_back_to_the_caller(world: World) -> None:
    world.store.rules["bob"] = [rule(ALWAYS, "carol")]
    world.store.rules["carol"] = [rule(ALWAYS, "alice")]
    route = await world.service.route("bob", FakeReachability(), caller="alice")
    assert route == Route("carol", ("bob",), loop_detected=True)
    # without a caller (a call from outside), alice is just the next user
    assert await world.service.route("bob", FakeReachability()) == Route("alice", ("bob", "carol"))


async def test_a_chain_takes_at_most_max_hops(world: World) -> None:
    chain = [f"u{n}" for n in range(10)]
    for user, target in zip(chain, chain[1:], strict=False):
        world.store.rules[user] = [rule(ALWAYS, target), rule(NO_ANSWER, "alice")]
    route = await world.service.route("u0", FakeReachability(), caller="erin")
    assert route == Route(chain[MAX_HOPS], tuple(chain[:MAX_HOPS]), loop_detected=True)


async def test_no_answer_is_handed_back_not_applied(world: World) -> None:
    world.store.rules["bob"] = [rule(NO_ANSWER, "carol", 15.0)]
    state = FakeReachability()
    assert await world.service.route("bob", state, caller="alice") == Route(
        "bob", (), NoAnswer("carol", 15.0)
    )
    assert state.asked == []


async def test_no_answer_is_the_final_targets(world: World) -> None:
    world.store.rules["bob"] = [rule(NO_ANSWER, "erin", 30.0), rule(ALWAYS, "carol")]
    world.store.rules["carol"] = [rule(NO_ANSWER, "dave", 10.0)]
    route = await world.service.route("bob", FakeReachability(), caller="alice")
    assert route == Route("carol", ("bob",), NoAnswer("dave", 10.0))


@pytest.mark.parametrize("back_to", ["bob", "alice", "carol"])
async def test_no_answer_back_into_the_chain_is_dropped(world: World, back_to: str) -> None:
    world.store.rules["bob"] = [rule(ALWAYS, "carol")]
    world.store.rules["carol"] = [rule(NO_ANSWER, back_to)]
    route = await world.service.route("bob", FakeReachability(), caller="alice")
    assert route == Route("carol", ("bob",))


async def test_routing_continues_after_no_answer(world: World) -> None:
    """The call flow routes again from the NO_ANSWER target, passing the chain so far."""
    world.store.rules["bob"] = [rule(NO_ANSWER, "carol", 10.0)]
    world.store.rules["carol"] = [rule(OFFLINE, "dave")]
    world.store.rules["dave"] = [rule(ALWAYS, "bob")]
    state = FakeReachability(offline=["carol"])
    first = await world.service.route("bob", state, caller="alice")
    assert first == Route("bob", (), NoAnswer("carol", 10.0))
    assert first.no_answer is not None
    second = await world.service.route(
        first.no_answer.target_user_id,
        state,
        caller="alice",
        forwarded_from=(*first.forwarded_from, first.target_user_id),
    )
    assert second == Route("dave", ("bob", "carol"), loop_detected=True)
