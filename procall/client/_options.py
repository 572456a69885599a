"""Client tuning: timeouts, keepalive, acks, reconnect backoff, and the channels."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

__all__ = ["Backoff", "ChannelFactory", "ClientOptions", "insecure_channel", "tls_channels"]

#: Builds the channel to one server address from the options the SDK recommends;
#: ``tls_channels(ca_file)`` for TLS; pass your own for interceptors or tracing.
ChannelFactory = Callable[[str, Sequence[tuple[str, Any]]], grpc.aio.Channel]


def insecure_channel(address: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
    """The default ``ChannelFactory``: a plaintext channel (``procall up``, tests, a LAN)."""
    return grpc.aio.insecure_channel(address, options=list(options))


def tls_channels(
    ca_file: str | Path, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> ChannelFactory:
    """A ``ChannelFactory`` for TLS: servers verified by ``ca_file`` (``procall up``'s is
    ``<data dir>/tls/ca.pem``), with a client certificate when ``cert_file``/``key_file``
    are given. The files are read once, here (``OSError`` when one cannot be read)."""
    ca = Path(ca_file).read_bytes()
    if cert_file is not None and key_file is not None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=Path(key_file).read_bytes(),
            certificate_chain=Path(cert_file).read_bytes(),
        )
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)

    def secure_channel(address: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(address, credentials, options=list(options))

    return secure_channel


@dataclass(frozen=True)
class ClientOptions:
    """How a ``ProcallClient`` behaves; the defaults suit an interactive client."""

    #: Deadline of each unary call, in seconds.
    call_timeout: float = 10.0
    #: Keepalive ping interval on every channel; with ``keepalive_timeout_ms`` a frozen
    #: server or a dead network path is noticed within seconds instead of TCP's minutes.
    keepalive_time_ms: int = 5_000
    #: How long a keepalive ping may go unanswered before the connection counts as dead.
    keepalive_timeout_ms: int = 5_000
    #: Acks go out at least this often (seconds) while events are being processed ...
    #: (acks only let the server free its replay buffer: resuming needs none, since the
    #: client names its last processed event itself; each one costs the server a stream
    #: message, so a client receiving a few events a second acks them every few seconds)
    ack_interval: float = 10.0
    #: ... and at once after this many processed, unacknowledged events (far below the
    #: server's replay buffer, ``[auth] replay_buffer_events``, 10,000 by default).
    ack_every: int = 256
    #: With nothing to ack, the last ack is sent again after this many seconds, as a
    #: keepalive: servers end streams whose client sent nothing for a while
    #: (``[limits] stream_idle_seconds``, 300 s by default).
    stream_keepalive: float = 60.0
    #: Reconnect backoff: first delay, cap (seconds), and the random spread (0..1)
    #: taken off each delay so that the clients of a restarted server do not return
    #: in lockstep.
    backoff_initial: float = 0.2
    backoff_max: float = 15.0
    backoff_jitter: float = 0.5
    #: Seconds one connection attempt (TCP, TLS and HTTP/2 handshake) may take. A server
    #: that all its clients reconnect to at once answers each handshake late: an attempt
    #: given a fraction of a second fails, is retried and adds to the crowd.
    connect_timeout: float = 10.0
    #: Events received but not yet taken from ``events()``; a full queue pauses reading.
    queue_size: int = 1_000
    #: Refresh the session token when this share of its lifetime has passed.
    refresh_at: float = 0.75
    #: Log in again with the remembered password when the session token is rejected.
    relogin: bool = True

    def channel_options(self) -> list[tuple[str, Any]]:
        """gRPC channel arguments: keepalive on idle streams, prompt reconnects."""
        max_backoff_ms = max(100, int(self.backoff_max * 1000))
        return [
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.http2.ping_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            # an idle Connect stream sends no data: keep pinging regardless
            ("grpc.http2.max_pings_without_data", 0),
            # grpc's own reconnect backoff grows to two minutes; ours caps it (a stream
            # waiting to reconnect goes as soon as a connection attempt succeeds)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", max_backoff_ms),
            # despite its name, the time grpc gives one connection attempt
            ("grpc.min_reconnect_backoff_ms", max(100, int(self.connect_timeout * 1000))),
        ]


class Backoff:
    """Exponential backoff with jitter: ``initial * 2**n`` capped, minus a random share."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or maximum < initial or not 0 <= jitter <= 1:
            raise ValueError("need 0 < initial <= maximum and 0 <= jitter <= 1")
        self._initial = initial
        self._max = maximum
        self._jitter = jitter
        self._rng = rng
        self.attempts = 0

    def next_delay(self, at_least: float = 0.0) -> float:
        """The delay before the next attempt (never below ``at_least``, e.g. a RetryInfo)."""
        ceiling = min(self._max, self._initial * 2.0 ** min(self.attempts, 32))
        self.attempts += 1
        delay = ceiling * (1 - self._jitter * self._rng())
        return max(delay, min(at_least, self._max))

    def reset(self) -> None:
        """Start over after a success."""
        self.attempts = 0
