"""Moves users between UCServers: one admin's move, a rebalance, a drain.

Whichever UCServer an administrator calls runs the move: it asks the users' old home
to hand their live sessions over to the target (``PeerService.MoveUsers``, see
``procall.session.moves`` for the hand-over), then points the Directory and the
shared home map in Redis at the target, so every server's routing agrees. The order
matters: until the home map changes, events still go to the old home, which forwards
them to the new one; after it, they go to the new home directly. A user whose old
home is dead has no live session to hand over: only the assignment changes.

Rebalances and drains run in the background as a ``MoveOperation`` on the server that
took the call; its progress is saved in Redis, so ``GetMoveOperation`` answers on any
UCServer. Their moves go in small
chunks (users of one old home to one new home), paced by a token bucket of
``moves_per_second`` so that a large rebalance does not make thousands of clients
reconnect at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from procall.api.session.v1 import session_pb2
from procall.errors import FailedPrecondition, InvalidArgument, NotFound, ProcallError
from procall.limits.buckets import TokenBucket
from procall.mesh.lookup.v1 import lookup_pb2
from procall.routing.balance import PlannedMove, plan_drain, plan_rebalance
from procall.servers.moves.peers import PeerCalls
from procall.servers.upstream.directory import DirectoryClient
from procall.session.moves import SessionMover
from procall.storage.redis.homes import RedisHomeStore
from procall.storage.redis.moves import RedisMoveOperations

__all__ = ["DEFAULT_MOVES_PER_SECOND", "MoveCoordinator", "MoveOperation"]

_log = logging.getLogger(__name__)

#: Moves per second of a rebalance or drain when the request names none.
DEFAULT_MOVES_PER_SECOND = 50
#: Most moves per second a request may ask for.
MAX_MOVES_PER_SECOND = 10_000
#: Most users one MoveUser call may name.
MAX_USERS_PER_MOVE = 1000
#: Finished operations kept for GetMoveOperation.
_KEEP_OPERATIONS = 100


@dataclass
class MoveOperation:
    """Progress of a background move (rebalance, drain)."""

    operation_id: str
    description: str
    server_id: str
    total: int = 0
    moved: int = 0
    failed: int = 0
    redirected_sessions: int = 0
    done: bool = False
    #: The task running it (None once done).
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _rate(moves_per_second: int, default: int) -> int:
    if moves_per_second == 0:
        return default
    if moves_per_second > MAX_MOVES_PER_SECOND:
        raise InvalidArgument.field("moves_per_second", f"must be at most {MAX_MOVES_PER_SECOND}")
    return moves_per_second


class MoveCoordinator:
    """Runs moves of users from any UCServer (see the module doc)."""

    def __init__(
        self,
        server_id: str,
        mover: SessionMover[session_pb2.Event],
        peers: PeerCalls,
        directory: DirectoryClient | None,
        homes: RedisHomeStore,
        *,
        progress: RedisMoveOperations | None = None,
        forget_home: Callable[[str], None],
        set_draining: Callable[[bool], None],
        default_rate: int = DEFAULT_MOVES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``forget_home`` drops a cached home of this server's router; ``set_draining``
        drains this server itself; ``default_rate``: moves per second when a request
        names none (``[moves] moves_per_second``)."""
        self._default_rate = max(1, default_rate)
        self._server_id = server_id
        self._mover = mover
        self._peers = peers
        self._directory = directory
        self._homes = homes
        self._progress = progress
        self._forget = forget_home
        self._set_draining = set_draining
        self._clock = clock
        self._operations: dict[str, MoveOperation] = {}

    def _require_directory(self) -> DirectoryClient:
        if self._directory is None:
            raise FailedPrecondition("no Directory is configured: users cannot be moved")
        return self._directory

    async def _live_target(self, target_id: str) -> lookup_pb2.ServerInfo:
        target = (await self._peers.ucservers()).get(target_id)
        if target is None:
            raise FailedPrecondition(
                f"UCServer {target_id} is not live", metadata={"server_id": target_id}
            )
        if target.draining:
            raise FailedPrecondition(
                f"UCServer {target_id} is draining", metadata={"server_id": target_id}
            )
        return target

    async def move_users(self, user_ids: Sequence[str], target_id: str) -> tuple[int, int]:
        """Move users (by id or username) to ``target_id`` now; returns (users moved,
        sessions redirected)."""
        if not target_id:
            raise InvalidArgument.field("target_server_id", "is required")
        if not user_ids:
            raise InvalidArgument.field("user_id", "is required")
        if len(user_ids) > MAX_USERS_PER_MOVE:
            raise InvalidArgument.field("user_ids", f"at most {MAX_USERS_PER_MOVE} at once")
        directory = self._require_directory()
        target = await self._live_target(target_id)
        by_home: dict[str, list[tuple[str, str]]] = {}
        for who in dict.fromkeys(user_ids):
            try:
                user = await directory.get_user(who)
            except (NotFound, InvalidArgument):  # not an id: a username (the CLI passes either)
                user = await directory.get_user_by_name(who)
            by_home.setdefault(user.home_server_id, []).append((user.user_id, user.username))
        moved = redirected = 0
        for home, users in by_home.items():
            if home == target_id:
                continue
            redirected += await self._move_group(home, users, target)
            moved += len(users)
        return moved, redirected

    async def _move_group(
        self, source: str, users: Sequence[tuple[str, str]], target: lookup_pb2.ServerInfo
    ) -> int:
        """Hand the users' sessions over (when their old home lives), then reassign them."""
        ids = [user_id for user_id, _ in users]
        if source == self._server_id:
            redirected = await self._mover.move_out(ids, target.server_id, target.address)
        elif source and source in await self._peers.ucservers():
            redirected = await self._peers.move_users(source, ids, target.server_id, target.address)
        else:
            redirected = 0  # a dead old home: its sessions are gone already
        await self._require_directory().set_home_servers({u: target.server_id for u in ids})
        for user_id, username in users:
            await self._homes.set_home(user_id, username, target.server_id)
            self._forget(user_id)
        await self._homes.announce_moved(ids)  # every server drops its cached homes
        return redirected

    # -- background operations -------------------------------------------------------------

    async def operation(self, operation_id: str) -> MoveOperation:
        """A running or recently finished operation, started here or on another UCServer
        (its progress as that server last saved it)."""
        found = self._operations.get(operation_id)
        if found is not None:
            return found
        record = await self._progress.load(operation_id) if self._progress else None
        if record is None:
            raise NotFound(
                f"no move operation {operation_id}", metadata={"operation_id": operation_id}
            )
        return MoveOperation(**record)

    async def _save(self, operation: MoveOperation) -> None:
        if self._progress is None:
            return
        record = {f.name: getattr(operation, f.name) for f in fields(operation) if f.name != "task"}
        try:
            await self._progress.save(operation.operation_id, record)
        except ProcallError as error:  # readable here; elsewhere once Redis answers
            _log.info("progress of %s not saved: %s", operation.operation_id, error.message)

    async def _homes_of_live(self) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
        """Users homed on each live UCServer, and the live ones that are not draining."""
        directory = self._require_directory()
        servers = await self._peers.ucservers()
        homes = {s: await directory.users_homed_on(s) for s in sorted(servers)}
        targets = [s for s, info in servers.items() if not info.draining]
        return homes, targets

    async def rebalance(self, moves_per_second: int) -> MoveOperation:
        """Start moving users until every live, non-draining UCServer has an even share."""
        rate = _rate(moves_per_second, self._default_rate)
        homes, targets = await self._homes_of_live()
        names = {u: n for users in homes.values() for u, n in users}
        plan = plan_rebalance({s: [u for u, _ in users] for s, users in homes.items()}, targets)
        return self._start("rebalance", plan, names, rate)

    async def _mark_draining(self, server_id: str, draining: bool) -> None:
        if server_id == self._server_id:
            self._set_draining(draining)
        elif server_id in await self._peers.ucservers():
            await self._peers.set_draining(server_id, draining)
        # else a dead server: nothing to tell it; draining it re-homes its users all the same

    async def stop_draining(self, server_id: str) -> MoveOperation:
        """``server_id`` takes new sessions again (a finished operation moving nobody)."""
        if not server_id:
            raise InvalidArgument.field("server_id", "is required")
        await self._mark_draining(server_id, False)
        return self._start(f"stop draining {server_id}", [], {}, DEFAULT_MOVES_PER_SECOND)

    async def drain(self, server_id: str, moves_per_second: int) -> MoveOperation:
        """Put ``server_id`` into draining and start moving its users to the others."""
        rate = _rate(moves_per_second, self._default_rate)
        if not server_id:
            raise InvalidArgument.field("server_id", "is required")
        await self._mark_draining(server_id, True)
        homes, targets = await self._homes_of_live()
        if server_id not in homes:
            homes[server_id] = await self._require_directory().users_homed_on(server_id)
        targets = [t for t in targets if t != server_id]
        if not targets and homes[server_id]:
            raise FailedPrecondition("no other live UCServer takes users: nothing to drain to")
        names = {u: n for users in homes.values() for u, n in users}
        plan = plan_drain(
            {s: [u for u, _ in users] for s, users in homes.items()}, server_id, targets
        )
        return self._start(f"drain {server_id}", plan, names, rate)

    def _start(
        self, description: str, plan: list[PlannedMove], names: dict[str, str], rate: int
    ) -> MoveOperation:
        operation = MoveOperation(uuid.uuid4().hex, description, self._server_id, total=len(plan))
        if len(self._operations) >= _KEEP_OPERATIONS:
            for key in [k for k, op in self._operations.items() if op.done][:10]:
                del self._operations[key]
        self._operations[operation.operation_id] = operation
        if not plan:
            operation.done = True
            operation.task = asyncio.create_task(self._save(operation))
            operation.task.add_done_callback(lambda _: setattr(operation, "task", None))
        else:
            operation.task = asyncio.create_task(
                self._run(operation, plan, names, rate), name=f"moves-{operation.operation_id}"
            )
        return operation

    async def _run(
        self, operation: MoveOperation, plan: list[PlannedMove], names: dict[str, str], rate: int
    ) -> None:
        """Carry out ``plan`` in chunks of one (old home, new home), paced at ``rate``."""
        chunk = max(1, min(100, math.ceil(rate / 5)))
        bucket = TokenBucket(rate, chunk, self._clock())
        ordered = sorted(plan, key=lambda m: (m.source, m.target))
        try:
            for (source, target_id), group in itertools.groupby(
                ordered, key=lambda m: (m.source, m.target)
            ):
                moves = list(group)
                for start in range(0, len(moves), chunk):
                    part = moves[start : start + chunk]
                    while (wait := bucket.take(self._clock(), len(part))) > 0:
                        await asyncio.sleep(wait)
                    users = [(m.user_id, names.get(m.user_id, "")) for m in part]
                    try:
                        target = await self._live_target(target_id)
                        operation.redirected_sessions += await self._move_group(
                            source, users, target
                        )
                        operation.moved += len(part)
                        await self._save(operation)
                    except ProcallError as error:
                        operation.failed += len(part)
                        _log.warning(
                            "%s: %d users not moved from %s to %s: %s",
                            operation.description,
                            len(part),
                            source,
                            target_id,
                            error.message,
                        )
        finally:
            operation.done = True
            operation.task = None
            await self._save(operation)

    async def stop(self) -> None:
        """Cancel the running operations (this server stops)."""
        tasks = [op.task for op in self._operations.values() if op.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
