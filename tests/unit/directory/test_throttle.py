"""Login throttling per account key."""

from __future__ import annotations

import pytest

from procall.directory.throttle import LoginThrottle
from procall.errors import ResourceExhausted


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_locks_after_the_limit_and_reports_time_left() -> None:
    clock = Clock()
    throttle = LoginThrottle(3, 30.0, clock=clock)
    for _ in range(2):
        throttle.check(["login:bob"])
        throttle.failure(["login:bob"])
    throttle.check(["login:bob"])  # two failures: still allowed
    throttle.failure(["login:bob"])
    with pytest.raises(ResourceExhausted) as failure:
        throttle.check(["login:bob"])
    assert failure.value.retry_after == 30.0
    assert failure.value.reason == "RATE_LIMITED"
    clock.now += 20
    with pytest.raises(ResourceExhausted) as failure:
        throttle.check(["login:bob", "login:alice"])
    assert failure.value.retry_after == 10.0
    throttle.check(["login:alice"])  # other keys are not affected
    clock.now += 10.5
    throttle.check(["login:bob"])  # the lock expired
    throttle.failure(["login:bob"])  # and counting starts afresh
    throttle.check(["login:bob"])


def test_success_clears_the_count() -> None:
    throttle = LoginThrottle(2, 30.0, clock=Clock())
    throttle.failure(["k"])
    throttle.success(["k"])
    throttle.failure(["k"])
    throttle.check(["k"])


def test_memory_is_bounded() -> None:
    throttle = LoginThrottle(1, 30.0, clock=Clock(), max_keys=100)
    for index in range(1000):
        throttle.failure([f"login:user{index}"])
    throttle.check(["login:user0"])  # forgotten: the oldest keys are dropped first
    with pytest.raises(ResourceExhausted):
        throttle.check(["login:user999"])


def test_one_source_locks_only_itself_out() -> None:
    clock = Clock()
    throttle = LoginThrottle(5, 30.0, max_account_failures=100, clock=clock)
    for _ in range(5):
        throttle.failure(["user:bob"], "ipv4:10.6.6.6")
    with pytest.raises(ResourceExhausted) as failure:
        throttle.check(["user:bob"], "ipv4:10.6.6.6")
    assert "from this address" in failure.value.message
    throttle.check(["user:bob"], "ipv4:10.1.1.1")  # bob at his desk still logs in


def test_an_attacker_repeating_from_one_source_never_locks_the_account_everywhere() -> None:
    clock = Clock()
    throttle = LoginThrottle(5, 30.0, max_account_failures=100, clock=clock)
    for _ in range(120):  # an hour of five wrong passwords every 30 s
        for _ in range(5):
            throttle.check(["user:bob"], "ipv4:10.6.6.6")
            throttle.failure(["user:bob"], "ipv4:10.6.6.6")
        clock.now += 30.5
        throttle.check(["user:bob"], "ipv4:10.1.1.1")


def test_a_guessing_attack_from_many_sources_locks_the_account_everywhere() -> None:
    clock = Clock()
    throttle = LoginThrottle(5, 30.0, max_account_failures=100, clock=clock)
    for source in range(25):  # 25 sources x 4 guesses, none of them locked by itself
        for _ in range(4):
            throttle.failure(["user:bob"], f"ipv4:10.0.0.{source}")
    with pytest.raises(ResourceExhausted) as failure:
        throttle.check(["user:bob"], "ipv4:10.1.1.1")
    assert "from all addresses" in failure.value.message
    clock.now += 30.5
    throttle.check(["user:bob"], "ipv4:10.1.1.1")  # only for the lockout period


def test_the_account_wide_ceiling_can_be_turned_off() -> None:
    throttle = LoginThrottle(5, 30.0, max_account_failures=0, clock=Clock())
    for source in range(100):
        for _ in range(4):
            throttle.failure(["user:bob"], f"ipv4:10.0.0.{source}")
    throttle.check(["user:bob"], "ipv4:10.1.1.1")
