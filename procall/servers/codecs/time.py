"""The one converter between protobuf ``Timestamp`` fields and domain times.

Domain models carry :data:`procall.clock.UnixTime` (float Unix seconds, see
``procall/clock.py`` for why); every servicer and codec converts through these functions.
"""

from __future__ import annotations

import math

from google.protobuf import timestamp_pb2

from procall.clock import UnixTime
from procall.errors import InvalidArgument

__all__ = ["seconds_of", "seconds_or_none", "timestamp", "timestamp_of"]

_NANOS = 1_000_000_000
_MICROS = 1_000_000

#: What a Timestamp may hold (google.protobuf.Timestamp's own documented range).
_VALID_RANGE = "a time from 0001-01-01 to 9999-12-31 UTC with nanos in [0, 999999999]"


def timestamp(seconds: UnixTime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of a Unix time in seconds, to the microsecond.

    A float near now holds no more than that (its step is about 0.24 us), and a time read
    from a SQL ``DATETIME`` column comes back with exactly its stored microseconds (plain
    ``seconds * 1e9`` would be off by up to a few hundred nanoseconds).
    """
    whole = math.floor(seconds)
    micros = round((seconds - whole) * _MICROS)
    if micros >= _MICROS:
        whole, micros = whole + 1, micros - _MICROS
    return timestamp_pb2.Timestamp(seconds=whole, nanos=micros * 1000)


def timestamp_of(seconds: UnixTime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp of a Unix time; None stays None (the field is left unset)."""
    return None if seconds is None else timestamp(seconds)


def seconds_of(stamp: timestamp_pb2.Timestamp) -> UnixTime:
    """A Timestamp as Unix seconds (an unset field reads as the epoch, 0.0)."""
    return stamp.seconds + stamp.nanos / _NANOS


def _checked(stamp: timestamp_pb2.Timestamp, field: str) -> None:
    # a value protobuf itself would refuse is the caller's mistake
    if not -62_135_596_800 <= stamp.seconds <= 253_402_300_799 or not 0 <= stamp.nanos < _NANOS:
        raise InvalidArgument.field(field or "time", f"must be {_VALID_RANGE}")


def seconds_or_none(
    stamp: timestamp_pb2.Timestamp, present: bool, field: str = ""
) -> UnixTime | None:
    """A Timestamp field as Unix seconds, None when the field is not set.

    A value outside the Timestamp range is INVALID_ARGUMENT naming ``field``.
    """
    if not present:
        return None
    _checked(stamp, field)
    return seconds_of(stamp)
