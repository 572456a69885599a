"""The one converter between protobuf ``Timestamp`` fields and domain times."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from procall.errors import InvalidArgument

__all__ = ["datetime_or_none", "seconds_or_none", "timestamp", "timestamp_of"]


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of a Unix time in seconds."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


#: What a Timestamp may hold (google.protobuf.Timestamp's own documented range).
_VALID_RANGE = "a time from 0001-01-01 to 9999-12-31 UTC with nanos in [0, 999999999]"


def _checked(stamp: timestamp_pb2.Timestamp, field: str) -> None:
    # protobuf raises ValueError for seconds or nanos out of range: the caller's mistake
    if not -62_135_596_800 <= stamp.seconds <= 253_402_300_799 or not 0 <= stamp.nanos < 10**9:
        raise InvalidArgument.field(field or "time", f"must be {_VALID_RANGE}")


def seconds_or_none(stamp: timestamp_pb2.Timestamp, present: bool, field: str = "") -> float | None:
    """A Timestamp field as Unix seconds, None when the field is not set.

    A value outside the Timestamp range is INVALID_ARGUMENT naming ``field``.
    """
    if not present:
        return None
    _checked(stamp, field)
    return stamp.ToNanoseconds() / 1e9


def timestamp_of(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp of an aware datetime; None stays unset."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def datetime_or_none(
    stamp: timestamp_pb2.Timestamp, present: bool, field: str = ""
) -> datetime | None:
    """A Timestamp field as an aware UTC datetime, None when the field is not set.

    A value outside the Timestamp range is INVALID_ARGUMENT naming ``field``.
    """
    if not present:
        return None
    _checked(stamp, field)
    return stamp.ToDatetime(tzinfo=UTC)
