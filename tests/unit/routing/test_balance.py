"""Plans of moving users: an even spread with the fewest moves, and a drain by load."""

from __future__ import annotations

from collections import Counter

from procall.routing.balance import PlannedMove, plan_drain, plan_rebalance


def _after(homes: dict[str, list[str]], moves: list[PlannedMove]) -> Counter[str]:
    where = {u: s for s, users in homes.items() for u in users}
    for move in moves:
        assert where[move.user_id] == move.source
        where[move.user_id] = move.target
    return Counter(where.values())


def test_a_new_server_gets_an_even_share_with_the_fewest_moves() -> None:
    homes = {"uc-1": [f"a{n}" for n in range(100)], "uc-2": [f"b{n}" for n in range(101)]}
    moves = plan_rebalance(homes, ["uc-1", "uc-2", "uc-3"])
    assert len(moves) == 67
    assert _after(homes, moves) == {"uc-1": 67, "uc-2": 67, "uc-3": 67}
    assert {m.target for m in moves} == {"uc-3"}


def test_an_even_spread_moves_nobody_and_servers_outside_the_targets_empty() -> None:
    assert plan_rebalance({"uc-1": ["a"], "uc-2": ["b", "c"]}, ["uc-1", "uc-2"]) == []
    homes = {"uc-1": ["a", "b"], "uc-2": ["c"], "uc-3": ["d", "e", "f"]}
    counts = _after(homes, plan_rebalance(homes, ["uc-1", "uc-2"]))
    assert counts == {"uc-1": 3, "uc-2": 3}
    assert plan_rebalance(homes, []) == []


def test_a_drain_fills_the_emptiest_first_and_leaves_the_others_alone() -> None:
    homes = {"uc-1": ["a", "b", "c"], "uc-2": [], "uc-3": ["d", "e", "f", "g", "h"]}
    moves = plan_drain(homes, "uc-3", ["uc-1", "uc-2"])
    assert {m.source for m in moves} == {"uc-3"}
    assert _after(homes, moves) == {"uc-1": 4, "uc-2": 4}
    assert plan_drain(homes, "uc-3", ["uc-3"]) == []
