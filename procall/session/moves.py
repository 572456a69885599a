"""Handing a user's live sessions over to another UCServer (moving users live).

A session's state lives in its home server's memory: its event log (sequence
numbers, the events the client has not acknowledged) and the runs whose resume
tokens it honours. Moving a user copies that state to the new home, so the
client continues there as if it had only reconnected:

1. **Freeze (old home).** The user's sessions leave delivery in one synchronous
   step (``SessionHub.begin_move``); deliveries to the user from then on are
   *held* here, in arrival order.
2. **Hand over.** The old home sends each session to the new home
   (``HandOverPeer.accept``): a token naming the new home, the acked and last
   sequence, the unacknowledged events with their sequence numbers, and the runs
   whose resume tokens stay valid. The new home builds the same session
   (``move_in``) with a log that continues the sequence, takes its license and
   tells its observers (the user is online there before it goes away here).
   Should the new home refuse, the sessions live on here with the held events
   appended (``SessionHub.abort_move``): nothing lost.
3. **Forward.** The held deliveries go to the new home, in order, behind the
   hand-over, and so does every later delivery that reaches the old home while
   other servers still route the user there (their home caches, events queued on
   peer streams), for ``forward_seconds``. The caller then points the Directory
   and the shared home map at the new home.
4. **Redirect.** Each stream of the moved sessions sends what it had pending,
   then a ``Redirect`` naming the new home with a token naming it, and ends.
   The client reconnects there and resumes with its last resume token: the new
   home honours the old run's tokens for this session and replays exactly the
   events after it. An old token that reaches the old home again is refused with
   ``WRONG_HOME_SERVER`` naming the new home, never a fresh session.

Events are never doubled: an event is either in the frozen log (and so in the
hand-over) or arrives after the freeze (held, then forwarded and appended once
at the new home with the next sequence numbers).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from procall.errors import FailedPrecondition, InvalidArgument, ProcallError
from procall.session.events import EventLog, SequencedEvent
from procall.session.hub import LiveSession, MovedTo
from procall.session.manager import SessionManager

__all__ = ["HandOver", "HandOverPeer", "SessionMover"]

_log = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass(frozen=True)
class HandOver(Generic[P]):
    """One live session as its old home hands it over."""

    token: str
    client_name: str
    acked: int
    last: int
    events: list[SequencedEvent[P]]
    resume_runs: frozenset[str]


class HandOverPeer(Protocol[P]):
    """The other UCServers, as the old home of moved users sees them."""

    async def accept(self, server_id: str, sessions: Sequence[HandOver[P]]) -> int:
        """Hand ``sessions`` to ``server_id``; how many it took (raises when it refused)."""
        ...


class SessionMover(Generic[P]):
    """Moves live sessions out of (and into) this server, see the module doc."""

    def __init__(
        self,
        manager: SessionManager[P],
        peer: HandOverPeer[P],
        *,
        forward_seconds: float = 120.0,
        moved_in: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """``forward_seconds``: how long deliveries that still reach this server for a
        moved user are forwarded (longer than any other server caches a home);
        ``moved_in`` is told of each user whose sessions were taken over here (its calls
        are kept up here from then on)."""
        self._moved_in = moved_in
        self._manager = manager
        self._peer = peer
        self._forward_seconds = forward_seconds

    async def move_out(self, user_ids: Sequence[str], target_id: str, target_address: str) -> int:
        """Hand the live sessions of ``user_ids`` to ``target_id`` and redirect their
        streams there; returns how many sessions were handed over."""
        manager = self._manager
        if target_id == manager.server_id:
            raise InvalidArgument.field("target_server_id", "is the users' home already")
        hub = manager.hub
        frozen: dict[str, list[LiveSession[P]]] = {}
        for user_id in dict.fromkeys(user_ids):
            if hub.hosts(user_id) and not hub.sessions_of(user_id) and not hub.moving(user_id):
                continue  # moved away already: keep forwarding to where its sessions are
            try:
                frozen[user_id] = hub.begin_move(user_id)
            except ValueError:
                for thawed, sessions in frozen.items():
                    hub.abort_move(thawed, sessions)
                raise FailedPrecondition(
                    f"user {user_id} is being moved already; try again when that move is done"
                ) from None
        handovers: list[HandOver[P]] = []
        moved_to: dict[str, MovedTo] = {}
        for sessions in frozen.values():
            for session in sessions:
                claims = session.claims
                token, _ = manager.signer.issue(
                    session_id=claims.session_id,
                    user_id=claims.user_id,
                    username=claims.username,
                    home_server_id=target_id,
                    admin=claims.admin,
                )
                moved_to[claims.session_id] = MovedTo(target_id, target_address, token)
                log = session.log
                handovers.append(
                    HandOver(
                        token,
                        session.client_name,
                        log.acked,
                        log.last_sequence,
                        log.snapshot(),
                        session.resume_runs | {manager.run_id},
                    )
                )
        if handovers:
            try:
                await self._peer.accept(target_id, handovers)
            except ProcallError:
                for user_id, sessions in frozen.items():
                    manager.hub.abort_move(user_id, sessions)
                raise
        now = manager.clock()
        until = now + self._forward_seconds
        for user_id, sessions in frozen.items():
            manager.hub.forward(user_id, target_id, until)
            for index, session in enumerate(sessions):
                await self._redirect(session, moved_to[session.claims.session_id], until)
                last = index == len(sessions) - 1
                for observer in manager.observers:
                    await observer.session_moved(session.claims, last)
        return len(handovers)

    async def _redirect(self, session: LiveSession[P], where: MovedTo, until: float) -> None:
        manager = self._manager
        session_id = session.claims.session_id
        manager.moved[session_id] = (where.server_id, where.address, until)
        session.moved_to = where
        await session.log.close()  # its streams send what is pending, then the Redirect
        try:
            await manager.licenses.give_back(session_id)
        except ProcallError:
            pass  # this server's next license renewal frees it

    async def move_in(self, handovers: Sequence[HandOver[P]]) -> int:
        """Take over sessions from their old home; returns how many live here now."""
        manager = self._manager
        now = manager.clock()
        for handover in handovers:
            claims = manager.signer.verify(handover.token)
            if claims.home_server_id != manager.server_id:
                raise InvalidArgument.field("sessions.session_token", "names another home")
            log = EventLog.restored(
                manager.hub.replay_capacity, handover.events, handover.last, handover.acked
            )
            session = LiveSession(
                claims,
                handover.client_name,
                log,
                now,
                detached_at=now,  # lapses after the resume window unless its client comes
                generation=1,
                resume_runs=handover.resume_runs,
            )
            manager.moved.pop(claims.session_id, None)  # moved back here
            replaced = manager.hub.get(claims.session_id)
            if replaced is not None:
                await manager.hub.remove(claims.session_id)
            manager.hub.adopt(session)
            try:
                await manager.licenses.take(claims.session_id)
            except ProcallError:
                pass  # renewed with this server's licenses once the pool answers
            for observer in manager.observers:
                await observer.session_opened(claims, handover.client_name)
        if self._moved_in is not None:
            for user_id in dict.fromkeys(self._manager.verify(h.token).user_id for h in handovers):
                await self._moved_in(user_id)
        return len(handovers)
