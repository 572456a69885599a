"""The one converter between protobuf ``Timestamp`` fields and domain times."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

__all__ = ["datetime_or_none", "seconds_or_none", "timestamp", "timestamp_of"]


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of a Unix time in seconds."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def seconds_or_none(stamp: timestamp_pb2.Timestamp, present: bool) -> float | None:
    """A Timestamp field as Unix seconds, None when the field is not set."""
    return stamp.ToNanoseconds() / 1e9 if present else None


def timestamp_of(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp of an aware datetime; None stays unset."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def datetime_or_none(stamp: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    """A Timestamp field as an aware UTC datetime, None when the field is not set."""
    return stamp.ToDatetime(tzinfo=UTC) if present else None
