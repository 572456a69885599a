"""Planning user moves between UCServers: an even spread, or draining one server.

Pure functions over "who is homed where"; the moves themselves (live hand-over,
rate limit) are done by ``procall.servers.moves``. Both plans move as few users as
they can: a rebalance only takes users from servers above their share, and gives
the rounding remainder to the servers that hold the most already.

Example::

    plan_rebalance({"uc-1": ["a", "b", "c", "d"], "uc-2": [], "uc-3": []},
                   ["uc-1", "uc-2", "uc-3"])
    # [PlannedMove("c", "uc-1", "uc-2"), PlannedMove("d", "uc-1", "uc-3")]
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["PlannedMove", "plan_drain", "plan_rebalance"]


@dataclass(frozen=True)
class PlannedMove:
    """Move ``user_id`` from its home ``source`` to ``target``."""

    user_id: str
    source: str
    target: str


def plan_rebalance(homes: Mapping[str, Sequence[str]], targets: Sequence[str]) -> list[PlannedMove]:
    """Moves after which every server of ``targets`` holds ``total // n`` or one more
    users; users homed on servers outside ``targets`` (dead, draining) all move."""
    if not targets:
        return []
    total = sum(len(users) for users in homes.values())
    base, extra = divmod(total, len(targets))
    # the remainder goes to the servers that have the most already: fewer moves
    by_size = sorted(targets, key=lambda s: (-len(homes.get(s, ())), s))
    quota = {server: base + (1 if i < extra else 0) for i, server in enumerate(by_size)}
    leaving: list[tuple[str, str]] = []
    for server, users in sorted(homes.items()):
        keep = quota.get(server, 0)
        leaving += [(user, server) for user in users[keep:]]
    moves: list[PlannedMove] = []
    position = 0
    for server in sorted(targets):
        room = quota[server] - len(homes.get(server, ()))
        for user, source in leaving[position : position + max(0, room)]:
            moves.append(PlannedMove(user, source, server))
        position += max(0, room)
    return moves


def plan_drain(
    homes: Mapping[str, Sequence[str]], drained: str, targets: Sequence[str]
) -> list[PlannedMove]:
    """Moves of every user of ``drained`` to ``targets``, each to the one holding the
    fewest users at that point (the others' users stay where they are)."""
    heap = [(len(homes.get(s, ())), s) for s in targets if s != drained]
    if not heap:
        return []
    heapq.heapify(heap)
    moves: list[PlannedMove] = []
    for user in homes.get(drained, ()):
        count, server = heapq.heappop(heap)
        moves.append(PlannedMove(user, drained, server))
        heapq.heappush(heap, (count + 1, server))
    return moves
