"""Two random choices: eligibility, refusals with reasons, and the spread it produces."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from procall.errors import ResourceExhausted, Unavailable
from procall.routing import Candidate, ServerInfo, ServerRole, choose_two_random


def media(name: str, *, capacity: int = 100, load: int = 0, draining: bool = False) -> ServerInfo:
    return ServerInfo(name, ServerRole.MEDIA, f"{name}:1", 1, capacity, load, draining)


def test_no_candidate_is_unavailable() -> None:
    with pytest.raises(Unavailable) as caught:
        choose_two_random([], random.Random(1))
    assert caught.value.reason == "BACKEND_UNAVAILABLE"
    assert caught.value.metadata == {"backend": "MediaServer"}


def test_all_draining_is_unavailable_server_draining() -> None:
    with pytest.raises(Unavailable) as caught:
        choose_two_random([Candidate(media("a", draining=True))], random.Random(1))
    assert caught.value.reason == "SERVER_DRAINING"


def test_all_full_is_resource_exhausted() -> None:
    full = [Candidate(media("a", capacity=2, load=2)), Candidate(media("b", capacity=3), 3)]
    with pytest.raises(ResourceExhausted) as caught:
        choose_two_random(full, random.Random(1))
    assert caught.value.reason == "LIMIT_EXCEEDED"
    assert caught.value.retry_after is not None


def test_servers_without_capacity_are_never_chosen() -> None:
    only = Candidate(media("b"))
    for seed in range(20):
        chosen = choose_two_random([Candidate(media("a", capacity=0)), only], random.Random(seed))
        assert chosen is only


def test_draining_and_full_servers_are_skipped() -> None:
    candidates = [
        Candidate(media("draining", draining=True)),
        Candidate(media("full", capacity=1, load=1)),
        Candidate(media("ok", load=99)),
    ]
    assert choose_two_random(candidates, random.Random(3)).server.server_id == "ok"


def test_the_less_utilized_of_the_pair_wins() -> None:
    # 50/100 is less utilized than 10/10, whatever the absolute numbers
    big, small = (
        Candidate(media("big", capacity=100, load=50)),
        Candidate(media("small", capacity=10, load=9)),
    )
    for seed in range(20):
        assert choose_two_random([small, big], random.Random(seed)) is big


def test_allocations_count_when_above_the_reported_load() -> None:
    assert Candidate(media("a", load=3), allocated=5).load == 5
    assert Candidate(media("a", load=7), allocated=5).load == 7
    assert Candidate(media("a", capacity=0)).utilization == float("inf")


def test_the_most_loaded_server_is_never_chosen_among_three_or_more() -> None:
    candidates = [Candidate(media("hot", load=90)), Candidate(media("a", load=10)),
                  Candidate(media("b", load=20))]  # fmt: skip
    rng = random.Random(7)
    counts = Counter(choose_two_random(candidates, rng).server.server_id for _ in range(300))
    assert counts["hot"] == 0
    assert counts["a"] > counts["b"] > 0  # a wins every pair it is in, b only against hot


def test_filling_up_follows_capacity() -> None:
    capacities = {"s": 10, "m": 30, "l": 60}
    allocated: Counter[str] = Counter()
    rng = random.Random(42)
    for _ in range(80):
        candidates = [Candidate(media(n, capacity=c), allocated[n]) for n, c in capacities.items()]
        allocated[choose_two_random(candidates, rng).server.server_id] += 1
    for name, capacity in capacities.items():
        assert abs(allocated[name] - 80 * capacity / 100) <= 0.25 * 80 * capacity / 100 + 2
