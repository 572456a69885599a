"""The live sessions of the users homed on this UCServer.

A session is created when its user logs in on (or first connects to) the home
server and lives until logout, token expiry or — after its last stream dropped —
the resume window lapses. Events for a user are appended to the event log of
each of the user's sessions; each open ``Connect`` stream follows one log.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from procall.clock import Clock, UnixTime
from procall.session.events import EventLog
from procall.session.tokens import SessionClaims

__all__ = ["Forwarder", "LiveSession", "MovedTo", "SessionHub"]

#: Sends a payload for users to another server (their new home): ``(server_id, users, payload)``.
Forwarder = Callable[[str, list[str], Any], None]

P = TypeVar("P")


@dataclass
class LiveSession(Generic[P]):
    """One logged-on client of a user homed here."""

    claims: SessionClaims
    client_name: str
    log: EventLog[P]
    created_at: UnixTime
    #: Open Connect streams following this session (normally 0 or 1).
    streams: int = 0
    #: When the last stream closed; None while a stream is open or before the first.
    detached_at: UnixTime | None = None
    #: Stream generation; a newer stream for the same session supersedes older ones.
    generation: int = field(default=0)
    #: Keys of the recent deliveries that must reach this session once (see ``SessionHub``).
    seen: OrderedDict[Hashable, None] = field(default_factory=OrderedDict)
    #: Runs of other servers whose resume tokens of this session are valid here (the
    #: session was handed over from them; see ``procall.session.moves``).
    resume_runs: frozenset[str] = frozenset()
    #: Set when the session was handed over to another server: its streams end with a
    #: ``Redirect`` there.
    moved_to: MovedTo | None = None


@dataclass(frozen=True)
class MovedTo:
    """Where a handed-over session continues, and the token naming that home."""

    server_id: str
    address: str
    token: str


class _Forward(Generic[P]):
    """Deliveries to a user being moved: held until the new home took the sessions over,
    then sent there (``SessionHub.forward``)."""

    __slots__ = ("held", "server_id", "until")

    def __init__(self) -> None:
        self.held: list[P] | None = []
        self.server_id = ""
        self.until = 0.0


class SessionHub(Generic[P]):
    """Sessions by id and by user, with delivery to every session of a user."""

    def __init__(
        self,
        clock: Clock,
        replay_capacity: int = 10_000,
        once_key: Callable[[P], Hashable | None] | None = None,
        once_window: int = 4096,
        kind_of: Callable[[P], str] | None = None,
    ) -> None:
        """``once_key`` names payloads that must reach a session at most once (a chat
        message announced again after its sender's server died); the last
        ``once_window`` keys are remembered per session. ``kind_of`` names a payload's
        kind, for ``delivered``."""
        self._clock = clock
        self._capacity = replay_capacity
        self._once_key = once_key
        self._once_window = once_window
        self._sessions: dict[str, LiveSession[P]] = {}
        self._by_user: dict[str, set[str]] = {}
        #: Users moved away from here, whose deliveries go to their new home.
        self._moved: dict[str, _Forward[P]] = {}
        #: Sends deliveries of moved users to their new home (set by the composition root).
        self.forwarder: Forwarder | None = None
        self._kind_of = kind_of
        #: Payloads appended to sessions so far, by kind (with ``kind_of``; for the metrics).
        self.delivered: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> LiveSession[P] | None:
        """The session, if it lives here."""
        return self._sessions.get(session_id)

    def add(self, claims: SessionClaims, client_name: str) -> LiveSession[P]:
        """Create the session of ``claims`` (or return it if it exists)."""
        existing = self._sessions.get(claims.session_id)
        if existing is not None:
            return existing
        session = LiveSession(claims, client_name, EventLog[P](self._capacity), self._clock())
        return self.adopt(session)

    def adopt(self, session: LiveSession[P]) -> LiveSession[P]:
        """Add a session built elsewhere (one handed over by the user's old home); the
        user is no longer forwarded away from here. The payloads in its log count as
        delivered for the at-most-once keys (a chat message announced again after the
        move is not appended twice)."""
        claims = session.claims
        if self._once_key is not None:
            for event in session.log.snapshot()[-self._once_window :]:
                key = self._once_key(event.payload)
                if key is not None:
                    session.seen[key] = None
        self._sessions[claims.session_id] = session
        self._by_user.setdefault(claims.user_id, set()).add(claims.session_id)
        self._moved.pop(claims.user_id, None)
        return session

    @property
    def replay_capacity(self) -> int:
        """Events each session's log keeps for replay."""
        return self._capacity

    async def remove(self, session_id: str) -> LiveSession[P] | None:
        """End a session: its streams finish, its events are dropped."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return None
        ids = self._by_user.get(session.claims.user_id)
        if ids is not None:
            ids.discard(session_id)
            if not ids:
                del self._by_user[session.claims.user_id]
        await session.log.close()
        return session

    def sessions(self) -> list[LiveSession[P]]:
        """Every live session."""
        return list(self._sessions.values())

    def sessions_of(self, user_id: str) -> list[LiveSession[P]]:
        """The live sessions of one user."""
        return [self._sessions[i] for i in self._by_user.get(user_id, ())]

    def hosts(self, user_id: str) -> bool:
        """Whether deliveries to the user are taken here: sessions live here, or the user
        is being (or was just) moved away and they are forwarded."""
        return user_id in self._by_user or user_id in self._moved

    def moving(self, user_id: str) -> bool:
        """Whether a hand-over of the user's sessions is under way (deliveries are held)."""
        current = self._moved.get(user_id)
        return current is not None and current.held is not None

    def begin_move(self, user_id: str) -> list[LiveSession[P]]:
        """Take the user's sessions out of delivery (their logs keep what they hold) and
        hold the user's deliveries from now on; returns the sessions.

        ``ValueError`` while another move of the user is under way (its held deliveries
        must not be lost)."""
        if self.moving(user_id):
            raise ValueError(f"a move of {user_id} is under way")
        sessions = self.sessions_of(user_id)
        for session in sessions:
            del self._sessions[session.claims.session_id]
        self._by_user.pop(user_id, None)
        self._moved[user_id] = _Forward()
        return sessions

    def abort_move(self, user_id: str, sessions: list[LiveSession[P]]) -> None:
        """The new home did not take the sessions: they live here again with the held
        deliveries appended, as if nothing happened."""
        forward = self._moved.pop(user_id, None)
        for session in sessions:
            self._sessions[session.claims.session_id] = session
            self._by_user.setdefault(user_id, set()).add(session.claims.session_id)
        for payload in (forward.held or []) if forward is not None else []:
            self.deliver_nowait([user_id], payload)

    def forward(self, user_id: str, server_id: str, until: float) -> None:
        """The new home ``server_id`` has the user's sessions: send it what was held, and
        every delivery until ``until`` (while other servers may still route here)."""
        forward = self._moved.setdefault(user_id, _Forward())
        held, forward.held = forward.held or [], None
        forward.server_id, forward.until = server_id, until
        if self.forwarder is not None:
            for payload in held:
                self.forwarder(server_id, [user_id], payload)

    def forget_moved(self, now: float) -> None:
        """Stop forwarding for users moved before their forwarding window ended."""
        for user_id, forward in list(self._moved.items()):
            if forward.held is None and forward.until <= now:
                del self._moved[user_id]

    def _deliver_moved(self, user_id: str, payload: P) -> None:
        forward = self._moved[user_id]
        if forward.held is not None:
            forward.held.append(payload)
        elif self.forwarder is not None:
            self.forwarder(forward.server_id, [user_id], payload)

    def users(self) -> set[str]:
        """Users with at least one live session here."""
        return set(self._by_user)

    async def deliver(self, user_ids: Iterable[str], payload: P, except_session: str = "") -> int:
        """Append ``payload`` to every session of the given users but ``except_session``
        (a sender's own session); returns how many got it."""
        return self.deliver_nowait(user_ids, payload, except_session)

    def deliver_nowait(self, user_ids: Iterable[str], payload: P, except_session: str = "") -> int:
        """``deliver`` without awaiting: one append per session, no task switch."""
        now = self._clock()
        count = 0
        sessions = self._sessions
        key = self._once_key(payload) if self._once_key is not None else None
        for user_id in user_ids:
            if user_id in self._moved:
                # moved away (or moving): the new home gets it; a session that opened here
                # meanwhile (a login racing the move) gets it too
                self._deliver_moved(user_id, payload)
            for session_id in self._by_user.get(user_id, ()):
                if session_id == except_session:
                    continue
                session = sessions[session_id]
                if key is not None:
                    if key in session.seen:
                        continue
                    session.seen[key] = None
                    if len(session.seen) > self._once_window:
                        session.seen.popitem(last=False)
                session.log.push(payload, now)
                count += 1
        if self._kind_of is not None and count:
            kind = self._kind_of(payload)
            self.delivered[kind] = self.delivered.get(kind, 0) + count
        return count

    def lapsed(self, resume_window: float) -> list[LiveSession[P]]:
        """Sessions without a stream for longer than ``resume_window`` or with expired tokens."""
        now = self._clock()
        return [
            s
            for s in self._sessions.values()
            if s.claims.expires_at <= now
            or (s.streams == 0 and now - (s.detached_at or s.created_at) > resume_window)
        ]
