"""The one time type (``procall/clock.py``) and the one protobuf converter keep microseconds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from procall.clock import from_datetime, now, to_datetime
from procall.servers.codecs.time import seconds_of, seconds_or_none, timestamp, timestamp_of


def test_a_sql_datetime_round_trips_through_unix_time_to_the_microsecond() -> None:
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(2000):
        moment = start + timedelta(microseconds=rng.randrange(10 * 365 * 86400 * 10**6))
        assert to_datetime(from_datetime(moment)) == moment


def test_a_naive_datetime_is_taken_as_utc() -> None:
    assert from_datetime(datetime(1970, 1, 2)) == 86400.0


def test_a_protobuf_timestamp_carries_the_microseconds_of_a_stored_time() -> None:
    rng = random.Random(11)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(2000):
        moment = start + timedelta(microseconds=rng.randrange(10 * 365 * 86400 * 10**6))
        stamp = timestamp(from_datetime(moment))
        assert stamp.ToDatetime(tzinfo=UTC) == moment
        assert to_datetime(seconds_of(stamp)) == moment


def test_a_fraction_that_rounds_up_carries_into_the_seconds() -> None:
    stamp = timestamp(1_700_000_000.9999999999)
    assert (stamp.seconds, stamp.nanos) == (1_700_000_001, 0)


def test_unset_stays_unset_both_ways() -> None:
    assert timestamp_of(None) is None
    assert seconds_or_none(timestamp_pb2.Timestamp(seconds=5), present=False) is None
    assert seconds_or_none(timestamp_pb2.Timestamp(seconds=5, nanos=500_000_000), True) == 5.5


def test_now_is_the_wall_clock() -> None:
    assert abs(now() - datetime.now(UTC).timestamp()) < 5
