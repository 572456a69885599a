"""Token buckets and the call limits, on a clock the tests move by hand."""

from __future__ import annotations

import pytest

from procall.errors import ResourceExhausted
from procall.limits import CallLimits, KeyedBuckets, LimitsConfig, TokenBucket


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # the next token in half a second
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0
    assert bucket.take(100.0) == 0.0  # refilled, but never beyond the burst
    assert bucket.tokens == pytest.approx(2.0)


def test_keyed_buckets_are_independent_and_bounded() -> None:
    clock = Clock()
    buckets = KeyedBuckets(1.0, 1, clock=clock, max_keys=10)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0
    for index in range(100):
        buckets.take(f"k{index}")
    assert len(buckets) == 10


def test_rates_per_user_and_per_source_with_retry_after() -> None:
    clock = Clock()
    limits = CallLimits(
        LimitsConfig(user_rate=1.0, user_burst=2, source_rate=0.5, source_burst=1),
        server_max_message_bytes=4 << 20,
        clock=clock,
    )
    limits.admit(user_id="alice", source="ipv4:10.0.0.1")
    limits.admit(user_id="alice", source="ipv4:10.0.0.1")
    with pytest.raises(ResourceExhausted) as limited:
        limits.admit(user_id="alice", source="ipv4:10.0.0.1")
    assert limited.value.reason == "RATE_LIMITED"
    assert limited.value.retry_after == 1.0
    limits.admit(user_id="bob", source="ipv4:10.0.0.1")  # users do not share a bucket
    limits.admit(user_id=None, source="ipv4:10.0.0.1")  # nor do users and anonymous callers
    with pytest.raises(ResourceExhausted) as anonymous:
        limits.admit(user_id=None, source="ipv4:10.0.0.1")
    assert anonymous.value.retry_after == 2.0
    limits.admit(user_id=None, source="ipv4:10.0.0.2")
    clock.now += 1.0
    limits.admit(user_id="alice", source="ipv4:10.0.0.1")


def test_message_limits_per_method() -> None:
    limits = CallLimits(
        LimitsConfig(
            client_message_bytes=1000,
            method_message_bytes={"procall.api.chat.v1.ChatService/SendMessage": 50_000},
        ),
        server_max_message_bytes=10_000,
    )
    assert limits.message_limit("procall.api.presence.v1.PresenceService/SetPresence") == 1000
    assert limits.message_limit("procall.api.session.v1.SessionService/Login") == 8 * 1024
    # above the server-wide maximum: grpc's own limit applies
    assert limits.message_limit("procall.api.chat.v1.ChatService/SendMessage") is None
    assert limits.message_limit("procall.mesh.peer.v1.PeerService/Exchange") is None
    error = limits.too_large("procall.api.x.v1.X/Y", 2000, 1000)
    assert error.reason == "LIMIT_EXCEEDED" and error.metadata["max_bytes"] == "1000"


def test_streams_per_user() -> None:
    limits = CallLimits(LimitsConfig(streams_per_user=2), server_max_message_bytes=4 << 20)
    first = limits.open_stream("alice")
    limits.open_stream("alice")
    with pytest.raises(ResourceExhausted) as refused:
        limits.open_stream("alice")
    assert refused.value.metadata["limit"] == "streams_per_user"
    limits.open_stream("bob")
    first.close()
    first.close()  # idempotent
    assert limits.open_streams("alice") == 1
    limits.open_stream("alice")


def test_new_limits_apply_without_a_restart() -> None:
    clock = Clock()
    limits = CallLimits(
        LimitsConfig(user_rate=1.0, user_burst=5, streams_per_user=1),
        server_max_message_bytes=4 << 20,
        clock=clock,
    )
    limits.admit(user_id="alice", source="s")  # alice's bucket exists before the change
    limits.reconfigure(LimitsConfig(user_rate=0.5, user_burst=2, streams_per_user=2))
    limits.admit(user_id="alice", source="s")  # her bucket holds at most the new burst
    limits.admit(user_id="alice", source="s")
    with pytest.raises(ResourceExhausted) as limited:
        limits.admit(user_id="alice", source="s")
    assert limited.value.retry_after == 2.0  # the new rate
    limits.admit(user_id="bob", source="s")  # new buckets take the new numbers
    limits.admit(user_id="bob", source="s")
    with pytest.raises(ResourceExhausted):
        limits.admit(user_id="bob", source="s")
    slots = [limits.open_stream("carol"), limits.open_stream("carol")]
    with pytest.raises(ResourceExhausted):
        limits.open_stream("carol")
    for slot in slots:
        slot.close()
