"""The one time type of procall's domain models: Unix seconds as a ``float``.

Every point in time a domain model carries (a chat message's ``created_at``, a presence's
``update_time``, a user's ``create_time``, a server's ``heartbeat_time``, ...) is a
:data:`UnixTime`: seconds since 1970-01-01 UTC, as a ``float``. Why this one and not an aware
``datetime``:

- The hot paths already use it. Presence changes, chat sends, session events and token checks
  run thousands of times a second; ``time.time()`` is the cheapest clock there is, a float
  compares and subtracts with no allocation, and no time zone can be forgotten.
- The stores already speak it: Redis keeps scores and hash fields as numbers (a datetime would
  be formatted and parsed on every read and write), the chat tables keep ``Double`` columns,
  and the Lua scripts of the routing view do arithmetic on milliseconds.
- A float of seconds holds microseconds exactly enough for a time near now (its step is about
  0.24 microseconds until 2106), so a SQL ``DATETIME`` column round-trips through it unchanged.

Where a store or a contract has its own type, the conversion happens once at that boundary:
protobuf ``Timestamp`` fields in ``procall.servers.codecs.time``, SQL ``DATETIME`` columns with
:func:`from_datetime` / :func:`to_datetime` in the store modules. The Python client SDK
(``procall.client``) hands aware ``datetime`` objects to its users: that is a public API for
people, not a domain model.

Durations (TTLs, windows, timeouts) are plain ``float`` seconds too; a monotonic clock
(``time.monotonic``) measures them where only differences matter and is never stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

__all__ = ["Clock", "UnixTime", "from_datetime", "now", "to_datetime"]

#: A point in time: seconds since the Unix epoch (UTC), as a float.
UnixTime: TypeAlias = float

#: A source of the current :data:`UnixTime` (``time.time`` in production, a fixed or
#: stepping function in tests).
Clock: TypeAlias = Callable[[], UnixTime]


def now() -> UnixTime:
    """The current wall-clock time."""
    return time.time()


def from_datetime(moment: datetime) -> UnixTime:
    """The :data:`UnixTime` of an aware ``datetime`` (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def to_datetime(seconds: UnixTime) -> datetime:
    """An aware UTC ``datetime`` of a :data:`UnixTime` (rounded to the microsecond)."""
    return datetime.fromtimestamp(seconds, UTC)
