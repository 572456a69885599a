"""Choosing a server by "two random choices" (the power of two choices).

Sample two distinct eligible servers uniformly at random and take the one with
the lower utilization (load relative to its declared capacity). Compared with
always taking the least-utilized server, this keeps most of the balance while
tolerating a stale view: several Lookups working from the same slightly old
loads do not all pile onto one server (LiveKit's node selector does the same).
Because utilization is load / capacity, a server declaring twice the capacity
ends up with about twice the calls.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from procall.errors import ResourceExhausted, Unavailable
from procall.routing.models import ServerInfo, busy_cpu_share

__all__ = ["Candidate", "choose_two_random"]


@dataclass(frozen=True)
class Candidate:
    """A live server and the work the routing view has already sent to it.

    ``allocated`` counts allocations not yet reflected in a heartbeat. The load
    used for the choice is the larger of the server's reported load and that
    count, so a burst of allocations between two heartbeats is not all sent to
    the same server, and load the server reports from elsewhere still counts.
    """

    server: ServerInfo
    allocated: int = 0

    @property
    def load(self) -> int:
        """The load the choice uses."""
        return max(self.server.load, self.allocated)

    @property
    def headroom(self) -> int:
        """Capacity left."""
        return self.server.capacity - self.load

    @property
    def utilization(self) -> float:
        """Load relative to capacity, or the server's CPU share of one core when higher and
        its core busy (a MediaServer whose core is busy is full before its declared capacity)."""
        if self.server.capacity <= 0:
            return float("inf")
        return max(self.load / self.server.capacity, busy_cpu_share(self.server.cpu_percent))


def choose_two_random(
    candidates: Sequence[Candidate], rng: random.Random, *, what: str = "MediaServer"
) -> Candidate:
    """Choose among ``candidates`` by two random choices.

    Draining servers and servers without headroom are not eligible. Of two
    distinct eligible servers drawn with ``rng``, the lower utilization wins;
    on a tie, the larger headroom; then the first drawn (itself random).

    Raises:
        Unavailable: No server at all (reason ``BACKEND_UNAVAILABLE``) or all of
            them draining (reason ``SERVER_DRAINING``).
        ResourceExhausted: Every non-draining server is at capacity (reason
            ``LIMIT_EXCEEDED``).
    """
    if not candidates:
        raise Unavailable(
            f"no live {what} is registered",
            metadata={"backend": what},
            retry_after=1.0,
        )
    active = [c for c in candidates if not c.server.draining]
    if not active:
        raise Unavailable(
            f"every live {what} is draining",
            reason="SERVER_DRAINING",
            metadata={"backend": what},
            retry_after=1.0,
        )
    eligible = [c for c in active if c.headroom > 0]
    if not eligible:
        raise ResourceExhausted(
            f"every live {what} is at capacity",
            reason="LIMIT_EXCEEDED",
            metadata={"backend": what},
            retry_after=1.0,
        )
    if len(eligible) == 1:
        return eligible[0]
    first, second = rng.sample(eligible, 2)
    if (second.utilization, -second.headroom) < (first.utilization, -first.headroom):
        return second
    return first
