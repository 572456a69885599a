"""Login, stream attachment, resume and logout on a UCServer (transport-free).

Licenses are taken when the home server creates the live session: at login
when the client logs in on its home server, else at the first call the client
makes there (``Connect`` or any other: ``touch``), so the home server knows
every session of its users, wherever they logged in. A session without a
stream lives for the resume window after its last call.

One user holds at most ``sessions_per_user`` sessions (and so licenses). At the
cap, the oldest session whose client has gone (no open stream, and either its
stream dropped or it made no call within ``CONNECT_GRACE`` seconds) is ended
and revoked to make room: a client that crashed does not lock its user out.
When every session is in use, the new one is refused with RESOURCE_EXHAUSTED
(``LIMIT_EXCEEDED``): the caps protect the license pool from one account,
and a live client is never thrown out by another login.

Every call's token goes through ``verify`` (called by the policy enforcer): the
signature check is cached per token (a busy client sends the same token
thousands of times), expiry and revocation are checked on every call. A logout
revokes the session: its tokens are refused from then on, here at once and on
the other servers as soon as the revocation store tells them (``revocations.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from procall.clock import Clock, UnixTime
from procall.errors import FailedPrecondition, ResourceExhausted, Unauthenticated, Unavailable
from procall.session.events import ReplayGap, SequencedEvent
from procall.session.hub import LiveSession, SessionHub
from procall.session.openings import OpeningGate
from procall.session.ports import (
    Authenticator,
    Licenses,
    Rehoming,
    ServerLocator,
    SessionObserver,
)
from procall.session.resume import (
    ResumeTokens,
    decode_resume_token,
    encode_resume_token,
    resume_expired,
)
from procall.session.revocations import RevocationList, RevocationStore
from procall.session.tokens import SessionClaims, TokenSigner

__all__ = ["CONNECT_GRACE", "Attachment", "LoginResult", "SessionManager"]

P = TypeVar("P")

#: Seconds a new session may go without a stream before a login at the cap may end it.
CONNECT_GRACE = 60.0


@dataclass(frozen=True)
class LoginResult:
    """What a successful login returns to the client."""

    token: str
    claims: SessionClaims
    home_address: str
    is_home_server: bool


@dataclass(frozen=True)
class Attachment(Generic[P]):
    """A stream attached to a session: where its replay starts, and its generation."""

    session: LiveSession[P]
    start_sequence: int
    resumed: bool
    generation: int
    #: Why the client's resume could not be honoured ('' when it was, or none was asked).
    resume_lost: str = ""

    @property
    def superseded(self) -> bool:
        """A newer stream of the same session took over from this one."""
        return self.session.generation != self.generation

    def follow(self, max_batch: int) -> AsyncIterator[list[SequencedEvent[P]]]:
        """The session's events from where this stream starts, up to ``max_batch`` at once
        (``ReplayGap`` when the client fell too far behind)."""
        return self.session.log.follow_batches(self.start_sequence, max_batch)

    def ack(self, sequence: int) -> None:
        """The client has the session's events up to ``sequence``."""
        self.session.log.ack(sequence)


class SessionManager(Generic[P]):
    """The session rules of one UCServer."""

    def __init__(
        self,
        *,
        server_id: str,
        run_id: str,
        own_address: Callable[[], str],
        hub: SessionHub[P],
        signer: TokenSigner,
        authenticator: Authenticator,
        locator: ServerLocator,
        licenses: Licenses,
        clock: Clock,
        observers: Sequence[SessionObserver] = (),
        revocations: RevocationStore | None = None,
        sessions_per_user: int = 0,
        openings: OpeningGate | None = None,
    ) -> None:
        """``sessions_per_user`` caps the sessions of one user (0: no cap); ``openings``
        bounds the streams being attached at once (none: no bound)."""
        self.server_id = server_id
        self.observers = list(observers)
        self.run_id = run_id
        self.own_address = own_address
        self.hub = hub
        self.signer = signer
        self._auth = authenticator
        self._locator = locator
        self._licenses = licenses
        self._clock = clock
        self._revocation_store = revocations
        #: Sessions whose tokens are refused (logged out here or elsewhere).
        self.revoked = RevocationList()
        self.sessions_per_user = sessions_per_user
        #: Streams being attached at once (a restarted server's returning clients).
        self.openings = openings or OpeningGate(0, 0)
        #: Sessions of a user being opened right now (counted against the cap).
        self._opening: dict[str, int] = {}
        #: Sessions handed over to another server: id -> (server id, address, until when).
        self.moved: dict[str, tuple[str, str, UnixTime]] = {}
        #: Set while this server drains: no new logins or sessions here.
        self.draining = False
        #: Re-homes users whose home is dead or draining at login (none: refuse instead).
        self.rehoming: Rehoming | None = None

    @property
    def clock(self) -> Clock:
        """This server's clock."""
        return self._clock

    @property
    def licenses(self) -> Licenses:
        """The shared license pool (a moved session's license moves with it)."""
        return self._licenses

    def is_live(self, session_id: str) -> bool:
        """Whether the session is live on this server (it may have no stream right now)."""
        return self.hub.get(session_id) is not None

    def holds(self, session: LiveSession[P]) -> bool:
        """Whether ``session`` is still this server's live session of its id (it was
        neither ended nor replaced)."""
        return self.hub.get(session.claims.session_id) is session

    def refresh(self, claims: SessionClaims) -> tuple[str, SessionClaims]:
        """A token with a fresh lifetime for the caller's session; the live session here,
        if any, carries the renewed claims from now on."""
        live = self.hub.get(claims.session_id)
        # a session handed over to this server: the new token names this home
        token, renewed = self.signer.refresh(live.claims if live is not None else claims)
        if live is not None:
            live.claims = renewed
        return token, renewed

    def verify(self, token: str) -> SessionClaims:
        """The claims of a valid token; ``Unauthenticated`` for a forged or expired one,
        or one of a session that has logged out."""
        claims = self.signer.verify(token)  # cached per token until it expires
        if self.revoked.is_revoked(claims.session_id, self._clock()):
            raise Unauthenticated("this session has ended (logged out); log in again")
        return claims

    async def login(
        self, username: str, password: str, client_name: str, source: str = ""
    ) -> LoginResult:
        """Authenticate (``source``: the client's network address), issue a token and say
        where the home server is."""
        user = await self._auth.authenticate(username, password, source)
        if not user.home_server_id:
            raise FailedPrecondition(
                "no home server is assigned to this user; ask an administrator"
            )
        home = user.home_server_id
        if self.rehoming is not None:
            # a dead or draining home: the user gets a live one by load (and keeps it)
            home = await self.rehoming.live_home(user.user_id, user.username, home)
        is_home = home == self.server_id
        if is_home and self.draining:
            raise Unavailable(
                f"UCServer {self.server_id} is draining and takes no new sessions; log in "
                "on another UCServer",
                reason="SERVER_DRAINING",
                retry_after=1.0,
            )
        address = self.own_address() if is_home else await self._address_of(home)
        token, claims = self.signer.issue(
            session_id=uuid.uuid4().hex,
            user_id=user.user_id,
            username=user.username,
            home_server_id=home,
            admin=user.admin,
        )
        if is_home:
            await self._open(claims, client_name)
        return LoginResult(token, claims, address, is_home)

    async def _address_of(self, server_id: str) -> str:
        address = await self._locator.address_of(server_id)
        if address is None:
            raise Unavailable(
                f"home server {server_id} is not reachable right now; try again later",
                metadata={"backend": f"UCServer {server_id}", "home_server_id": server_id},
                retry_after=2.0,
            )
        return address

    async def _open(self, claims: SessionClaims, client_name: str) -> LiveSession[P]:
        existing = self.hub.get(claims.session_id)
        if existing is not None:
            return existing
        user_id = claims.user_id
        self._opening[user_id] = self._opening.get(user_id, 0) + 1
        try:
            await self._make_room(user_id)
            if not await self._licenses.take(claims.session_id):
                raise ResourceExhausted(
                    "all licenses of the system are in use; try again later or ask an "
                    "administrator to extend the license pool",
                    reason="LICENSE_POOL_EXHAUSTED",
                )
            session = self.hub.add(claims, client_name)
        finally:
            left = self._opening.pop(user_id) - 1
            if left:
                self._opening[user_id] = left
        for observer in self.observers:
            await observer.session_opened(claims, client_name)
        return session

    async def touch(self, claims: SessionClaims) -> LiveSession[P] | None:
        """A call of the session reached a server: on its home server the session is live
        from now on (opened if the client logged in elsewhere and has not connected yet)
        and, while it has no stream, kept for the resume window from now. None elsewhere."""
        if claims.home_server_id != self.server_id or claims.session_id in self.moved:
            return None
        session = self.hub.get(claims.session_id)
        if session is None:
            return await self._open(claims, "")
        if session.streams == 0:
            session.detached_at = self._clock()
        return session

    async def revoked_elsewhere(self, session_id: str, until: UnixTime) -> None:
        """Another server logged the session out: refuse its tokens here, and end it when
        it lives here (its presence ends, its streams get SessionClosed)."""
        self.revoked.add(session_id, until)
        session = self.hub.get(session_id)
        if session is not None:
            await self._end(session.claims)

    async def _make_room(self, user_id: str) -> None:
        """Keep ``user_id`` below the session cap: end sessions whose clients have gone,
        or refuse with ``ResourceExhausted`` when all are in use (see the module doc)."""
        cap = self.sessions_per_user
        if cap <= 0:
            return
        live = self.hub.sessions_of(user_id)
        # the sessions being opened (this one included) count, so that logins racing
        # each other cannot pass the cap together
        excess = len(live) + self._opening.get(user_id, 0) - cap
        if excess <= 0:
            return
        now = self._clock()
        gone = sorted(
            (
                s
                for s in live
                # no stream now: it had one that dropped, or none and no call for a while
                if s.streams == 0
                and (s.generation > 0 or now - (s.detached_at or s.created_at) >= CONNECT_GRACE)
            ),
            key=lambda s: s.detached_at or s.created_at,
        )
        if len(gone) < excess:
            raise ResourceExhausted(
                f"this user already has {len(live)} sessions in use (at most {cap}); log out "
                "of another device first",
                reason="LIMIT_EXCEEDED",
                metadata={"limit": "sessions_per_user", "max": str(cap)},
            )
        for session in gone[:excess]:
            await self.logout(session.claims)

    async def check_home(self, claims: SessionClaims) -> None:
        """``FailedPrecondition(WRONG_HOME_SERVER)`` naming the home when this is not it."""
        moved = self.moved.get(claims.session_id)
        if claims.home_server_id == self.server_id and moved is None:
            return
        if moved is None and self.hub.get(claims.session_id) is not None:
            return  # handed over to this server: a client that missed the Redirect
        if moved is not None:  # handed over: the Redirect event carried the new token
            home, address = moved[0], moved[1]
        else:
            home = claims.home_server_id
            address = await self._locator.address_of(home) or ""
        raise FailedPrecondition(
            f"this is not the home server of {claims.username}; connect to "
            f"{home} at {address or 'its address from Login'}",
            reason="WRONG_HOME_SERVER",
            metadata={"home_server_id": home, "home_server_address": address},
        )

    async def attach(
        self,
        claims: SessionClaims,
        resume_token: str,
        client_name: str,
        *,
        reopen_if_resume_lost: bool = False,
    ) -> Attachment[P]:
        """Attach a new stream to the session, resuming after the client's last event.

        A resume that cannot be honoured raises ``FailedPrecondition(RESUME_EXPIRED)``, or
        with ``reopen_if_resume_lost`` opens a fresh stream whose ``Attachment.resume_lost``
        says why (the client resynchronises without another round trip). Attachments beyond
        the bound of ``openings`` wait their turn, or are refused when too many wait."""
        async with self.openings.admit():
            return await self._attach(claims, resume_token, client_name, reopen_if_resume_lost)

    async def _attach(
        self, claims: SessionClaims, resume_token: str, client_name: str, reopen: bool
    ) -> Attachment[P]:
        await self.check_home(claims)
        session = self.hub.get(claims.session_id)
        lost = ""
        if resume_token:
            try:
                start = self._resume_point(claims, session, resume_token)
            except FailedPrecondition as error:
                if not reopen or error.reason != "RESUME_EXPIRED":
                    raise
                lost = error.message
            else:
                assert session is not None  # _resume_point refuses a missing session
                return self._attached(session, start, resumed=True)
        if session is None:
            session = await self._open(claims, client_name)
        # a fresh stream gets what is still buffered and unacked; the client resyncs the rest
        start = max(session.log.acked, session.log.resumable_from)
        return self._attached(session, start, resumed=False, resume_lost=lost)

    def _resume_point(
        self, claims: SessionClaims, session: LiveSession[P] | None, resume_token: str
    ) -> int:
        """The sequence a resume continues after; ``FailedPrecondition(RESUME_EXPIRED)``
        when it cannot."""
        point = decode_resume_token(resume_token)
        if point.session_id != claims.session_id:
            raise resume_expired("the resume token belongs to another session")
        if session is None or (
            point.run_id != self.run_id and point.run_id not in session.resume_runs
        ):
            raise resume_expired("the server restarted or the session lapsed")
        try:
            session.log.after(point.sequence)
        except ReplayGap:
            raise resume_expired("the missed events are no longer buffered") from None
        return point.sequence

    def _attached(
        self, session: LiveSession[P], start: int, *, resumed: bool, resume_lost: str = ""
    ) -> Attachment[P]:
        session.streams += 1
        session.generation += 1
        session.detached_at = None
        return Attachment(session, start, resumed, session.generation, resume_lost)

    def detach(self, attachment: Attachment[P]) -> None:
        """A stream ended; the session waits for a resume within the resume window."""
        session = attachment.session
        session.streams = max(0, session.streams - 1)
        if session.streams == 0:
            session.detached_at = self._clock()

    def resume_token(self, session_id: str, sequence: int) -> str:
        """The resume token of an event."""
        return encode_resume_token(session_id, self.run_id, sequence)

    def resume_tokens(self, session_id: str) -> ResumeTokens:
        """The resume tokens of the session's events (``resume_token``, for a stream that
        writes one per event)."""
        return ResumeTokens(session_id, self.run_id)

    async def logout(self, claims: SessionClaims) -> None:
        """End the session, return its license and revoke its tokens everywhere (on any
        server: the home server ends the session as soon as it learns the revocation)."""
        # no token of this session outlives a token refreshed right now
        until = self._clock() + self.signer.ttl
        self.revoked.add(claims.session_id, until)
        self.revoked.unsaved[claims.session_id] = until
        await self._end(claims)
        if self._revocation_store is None:
            self.revoked.unsaved.pop(claims.session_id, None)
            return
        try:
            await self._revocation_store.revoke(claims.session_id, until)
            self.revoked.unsaved.pop(claims.session_id, None)
        except Unavailable:
            pass  # refused here meanwhile; the upkeep saves it once the store answers

    async def save_revocations(self) -> None:
        """Hand revocations the store has not taken yet to it (again); ``Unavailable`` when
        it still cannot take them (they stay in force here meanwhile)."""
        if self._revocation_store is None:
            self.revoked.unsaved.clear()
            return
        for session_id, until in list(self.revoked.unsaved.items()):
            await self._revocation_store.revoke(session_id, until)
            self.revoked.unsaved.pop(session_id, None)

    async def _end(self, claims: SessionClaims) -> None:
        removed = await self.hub.remove(claims.session_id)
        try:
            await self._licenses.give_back(claims.session_id)
        except Unavailable:
            pass  # the license is freed by the next renewal once Redis answers
        if removed is not None:
            last = not self.hub.sessions_of(claims.user_id)
            for observer in self.observers:
                await observer.session_closed(removed.claims, last)

    async def shutdown(self) -> None:
        """This server stops: release every session's license and tell the observers,
        but send no SessionClosed: the clients reconnect, to this server once it is
        back (resynchronising) or to their new home."""
        for session in self.hub.sessions():
            await session.log.close()  # its streams end with UNAVAILABLE, not SessionClosed
            try:
                await self._licenses.give_back(session.claims.session_id)
            except Unavailable:
                pass  # the licenses lapse with this server's heartbeat
            for observer in self.observers:
                await observer.session_closed(session.claims, True)

    async def expire_lapsed(self, resume_window: float) -> int:
        """End sessions whose clients are gone past the resume window; returns how many."""
        now = self._clock()
        self.hub.forget_moved(now)
        for session_id, (_, _, until) in list(self.moved.items()):
            if until <= now:
                del self.moved[session_id]
        lapsed = self.hub.lapsed(resume_window)
        for session in lapsed:
            await self._end(session.claims)
        return len(lapsed)

    async def renew_licenses(self) -> None:
        """Heartbeat of this server's licenses (re-adds them after a Redis restart)."""
        await self._licenses.renew(s.claims.session_id for s in self.hub.sessions())
