"""The load shedder: a standing queue or too many calls at once refuse new work."""

from __future__ import annotations

import pytest

from procall.errors import ResourceExhausted
from procall.limits import LoadShedder, OverloadConfig
from tests.unit.limits.test_limits import Clock

CONFIG = OverloadConfig(lag_target=0.1, window=1.0, max_in_flight=3, retry_after=1.0)


def shedder(clock: Clock, config: OverloadConfig = CONFIG) -> LoadShedder:
    return LoadShedder(config, clock=clock, rng=lambda: 0.5)


def test_a_burst_of_lag_refuses_nothing() -> None:
    clock = Clock()
    guard = shedder(clock)
    guard.record_lag(0.5)  # one late timer: a burst
    clock.now += 0.2
    guard.record_lag(0.02)  # the queue drained
    clock.now += 0.9
    guard.record_lag(0.3)
    assert not guard.overloaded
    guard.admit()
    assert guard.in_flight == 1


def test_lag_held_for_the_window_refuses_new_calls_until_it_drains() -> None:
    clock = Clock()
    guard = shedder(clock)
    for _ in range(5):
        guard.record_lag(0.15)
        clock.now += 0.25
    guard.record_lag(0.15)
    assert guard.overloaded
    with pytest.raises(ResourceExhausted) as refused:
        guard.admit()
    assert refused.value.reason == "OVERLOADED"
    assert refused.value.retry_after == pytest.approx(1.0)
    assert guard.shed == 1 and guard.in_flight == 0
    guard.record_lag(0.01)  # one sample under the target: the queue drained
    assert not guard.overloaded
    guard.admit()


def test_the_lag_of_a_late_sample_counts_towards_the_window() -> None:
    clock = Clock()
    guard = shedder(clock)
    guard.record_lag(1.2)  # the loop was stuck for longer than the whole window
    assert guard.overloaded


def test_too_many_calls_at_once_are_refused_until_one_ends() -> None:
    guard = shedder(Clock())
    for _ in range(3):
        guard.admit()
    with pytest.raises(ResourceExhausted):
        guard.admit()
    guard.finished()
    guard.admit()
    assert guard.in_flight == 3


def test_refused_callers_are_told_to_come_back_at_different_times() -> None:
    draws = iter([0.0, 0.99])
    guard = LoadShedder(
        OverloadConfig(max_in_flight=1, retry_after=2.0), clock=Clock(), rng=lambda: next(draws)
    )
    guard.admit()
    delays = []
    for _ in range(2):
        with pytest.raises(ResourceExhausted) as refused:
            guard.admit()
        delays.append(refused.value.retry_after)
    assert delays == [1.0, 3.0]


def test_zero_turns_each_check_off() -> None:
    clock = Clock()
    guard = shedder(clock, OverloadConfig(lag_target=0, max_in_flight=0))
    for _ in range(10):
        guard.record_lag(5.0)
        clock.now += 1
    for _ in range(10_000):
        guard.admit()
    assert not guard.overloaded
