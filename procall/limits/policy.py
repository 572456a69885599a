"""The limits every server applies to the calls it serves (transport-free).

``CallLimits`` decides, for one incoming call, whether it may go on:

* **rates**: a call with a session token takes a token from its user's bucket
  (``user_rate`` per second, ``user_burst`` at once); a call without one (Login,
  health, reflection, a client that did not log in) from its network source's
  bucket (``source_rate`` / ``source_burst``), because an anonymous caller has no
  other name. Calls of a proven mesh service are not rate-limited here: each
  server bounds its own outbound work, and refusing a peer's delivery would lose
  events rather than slow an abuser. An empty bucket answers RESOURCE_EXHAUSTED
  (``RATE_LIMITED``) with the seconds until the next token as ``RetryInfo``.
* **message sizes**: every request message of a client-facing method (the
  ``procall.api.*`` services) is held to ``client_message_bytes`` unless the
  method has its own limit; server-to-server methods keep the server-wide
  ``[server] max_message_bytes``. Too large answers RESOURCE_EXHAUSTED
  (``LIMIT_EXCEEDED``), as grpc does for a message above the server-wide maximum.
* **streams per user**: a user holds at most ``streams_per_user`` open
  server-streaming calls (Connect streams) on one server; more answer
  RESOURCE_EXHAUSTED (``LIMIT_EXCEEDED``).
* **idle streams**: a stream whose caller sends nothing (not even an ack or a
  keepalive) for ``stream_idle_seconds`` is ended with UNAVAILABLE
  (``STREAM_IDLE``); the client SDK re-sends its last ack as a keepalive, so only
  clients that stopped talking are cut off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from procall.errors import ResourceExhausted, Unavailable
from procall.limits.buckets import KeyedBuckets

__all__ = [
    "CLIENT_API_PREFIX",
    "DEFAULT_METHOD_MESSAGE_BYTES",
    "CallLimits",
    "LimitsConfig",
    "StreamSlot",
    "stream_idle",
]

#: Services whose full names start with this face clients and administrators.
CLIENT_API_PREFIX = "procall.api."

#: Methods of the client-facing API whose requests may be larger (or must be smaller)
#: than ``client_message_bytes``; keyed by ``package.Service/Method``.
DEFAULT_METHOD_MESSAGE_BYTES: Mapping[str, int] = {
    # a login carries a name and a password, nothing more
    "procall.api.session.v1.SessionService/Login": 8 * 1024,
    # one Connect message is an open or an ack
    "procall.api.session.v1.SessionService/Connect": 8 * 1024,
    # an import homes up to 10,000 users in one call
    "procall.api.directory.v1.DirectoryService/BatchSetHomeServers": 2 * 1024 * 1024,
    # a pick-up group lists its members
    "procall.api.directory.v1.DirectoryService/CreatePickupGroup": 1024 * 1024,
    "procall.api.directory.v1.DirectoryService/UpdatePickupGroup": 1024 * 1024,
    "procall.api.directory.v1.DirectoryService/ModifyGroupMembers": 1024 * 1024,
}


@dataclass(frozen=True)
class LimitsConfig:
    """The numbers behind ``CallLimits`` (``[limits]`` in the settings)."""

    user_rate: float = 100.0
    user_burst: float = 400.0
    source_rate: float = 50.0
    source_burst: float = 200.0
    streams_per_user: int = 10
    client_message_bytes: int = 256 * 1024
    #: Per-method request limits (``package.Service/Method``), over the defaults above.
    method_message_bytes: Mapping[str, int] = field(default_factory=dict)
    stream_idle_seconds: float = 300.0


@dataclass
class StreamSlot:
    """One open stream counted against its user; ``close`` gives the slot back."""

    _owner: CallLimits | None
    user_id: str

    def close(self) -> None:
        """Give the slot back (idempotent)."""
        if self._owner is not None:
            self._owner._release(self.user_id)
            self._owner = None


def stream_idle(seconds: float) -> Unavailable:
    """The error that ends a stream whose caller sent nothing for ``seconds``."""
    return Unavailable(
        f"the stream sent nothing for {seconds:g} s (not even an ack or keepalive) and was "
        "ended; reconnect and resume",
        reason="STREAM_IDLE",
        metadata={"idle_seconds": f"{seconds:g}"},
        retry_after=0.0,
    )


class CallLimits:
    """Rates, request sizes and stream counts of the calls one server serves."""

    def __init__(
        self,
        config: LimitsConfig,
        *,
        server_max_message_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._server_max = server_max_message_bytes
        self._users = KeyedBuckets(config.user_rate, config.user_burst, clock=clock)
        self._sources = KeyedBuckets(config.source_rate, config.source_burst, clock=clock)
        self._sizes = {**DEFAULT_METHOD_MESSAGE_BYTES, **config.method_message_bytes}
        self._streams: dict[str, int] = {}

    def reconfigure(self, config: LimitsConfig) -> None:
        """Apply new numbers without a restart (the configuration changed): rates and
        bursts at once, stream caps for the next stream, idle bounds for streams opened
        from now on. Message sizes stay as they were at start (handlers are wrapped once)."""
        self.config = config
        self._users.set_rate(config.user_rate, config.user_burst)
        self._sources.set_rate(config.source_rate, config.source_burst)

    # -- rates ----------------------------------------------------------------------------

    def admit(self, *, user_id: str | None, source: str) -> None:
        """Take one request from the caller's bucket; ``ResourceExhausted`` when empty."""
        if user_id:
            wait, who, limit = self._users.take(user_id), "user", self.config.user_rate
        else:
            wait, who, limit = self._sources.take(source), "source", self.config.source_rate
        if wait:
            retry = min(60.0, math.ceil(wait * 10) / 10) if math.isfinite(wait) else 60.0
            raise ResourceExhausted(
                f"too many requests from this {who} (at most {limit:g} per second); "
                f"retry in {retry:g} s",
                reason="RATE_LIMITED",
                metadata={"limit": f"{who}_rate", "per_second": f"{limit:g}"},
                retry_after=retry,
            )

    # -- message sizes --------------------------------------------------------------------

    def message_limit(self, method: str) -> int | None:
        """The largest request message ``method`` (``package.Service/Method``) accepts,
        or None when only the server-wide maximum applies."""
        limit = self._sizes.get(method)
        if limit is None and method.startswith(CLIENT_API_PREFIX):
            limit = self.config.client_message_bytes
        if limit is None or limit >= self._server_max:
            return None
        return limit

    @staticmethod
    def too_large(method: str, size: int, limit: int) -> ResourceExhausted:
        """The error for a request message of ``size`` bytes above ``limit``."""
        return ResourceExhausted(
            f"the request message has {size} bytes; {method.rsplit('/', 1)[-1]} accepts at "
            f"most {limit}",
            reason="LIMIT_EXCEEDED",
            metadata={"limit": "message_bytes", "max_bytes": str(limit)},
        )

    # -- streams per user -----------------------------------------------------------------

    def open_stream(self, user_id: str) -> StreamSlot:
        """Count an open stream of ``user_id``; ``ResourceExhausted`` above the cap."""
        count = self._streams.get(user_id, 0)
        if count >= self.config.streams_per_user:
            raise ResourceExhausted(
                f"this user already has {count} open streams on this server (the most "
                "allowed); close one first",
                reason="LIMIT_EXCEEDED",
                metadata={"limit": "streams_per_user", "max": str(self.config.streams_per_user)},
            )
        self._streams[user_id] = count + 1
        return StreamSlot(self, user_id)

    def open_streams(self, user_id: str) -> int:
        """How many streams ``user_id`` holds open here."""
        return self._streams.get(user_id, 0)

    def _release(self, user_id: str) -> None:
        count = self._streams.get(user_id, 0) - 1
        if count > 0:
            self._streams[user_id] = count
        else:
            self._streams.pop(user_id, None)
