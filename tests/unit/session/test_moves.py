"""Handing sessions over between two SessionManagers: sequence, unacked events, events
arriving meanwhile, resume tokens of the old run, and a refused hand-over."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from procall.errors import FailedPrecondition, Unavailable
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.moves import HandOver, SessionMover
from procall.session.tokens import TokenSigner
from tests.unit.session.fakes import StepClock, TestAuthenticator, TestLocator


class _Licenses:
    def __init__(self) -> None:
        self.held: set[str] = set()

    async def take(self, session_id: str) -> bool:
        self.held.add(session_id)
        return True

    async def give_back(self, session_id: str) -> None:
        self.held.discard(session_id)

    async def renew(self, session_ids: Iterable[str]) -> None:
        pass


class _Peer:
    """The new home, reached directly; ``during`` is delivered at the old home while
    the hand-over is under way; ``refuse`` makes it fail."""

    def __init__(self) -> None:
        self.target: SessionMover[str] | None = None
        self.old_hub: SessionHub[str] | None = None
        self.during: list[tuple[str, str]] = []
        self.refuse = False

    async def accept(self, server_id: str, sessions: Sequence[HandOver[str]]) -> int:
        assert self.old_hub is not None and self.target is not None
        for user_id, payload in self.during:
            self.old_hub.deliver_nowait([user_id], payload)
        if self.refuse:
            raise Unavailable("the new home does not answer")
        return await self.target.move_in(sessions)


def _manager(server_id: str, signer: TokenSigner, clock: StepClock) -> SessionManager[str]:
    return SessionManager(
        server_id=server_id,
        run_id=f"run-{server_id}",
        own_address=lambda: f"{server_id}:1",
        hub=SessionHub[str](clock),
        signer=signer,
        authenticator=TestAuthenticator(),
        locator=TestLocator(),
        licenses=_Licenses(),
        clock=clock,
    )


@pytest.fixture
def pair() -> tuple[SessionManager[str], SessionManager[str], _Peer]:
    clock = StepClock()
    signer = TokenSigner.ephemeral(3600, clock=clock)
    old, new = _manager("uc-1", signer, clock), _manager("uc-2", signer, clock)
    peer = _Peer()
    peer.target = SessionMover(new, peer)
    peer.old_hub = old.hub
    old.hub.forwarder = lambda server, users, payload: new.hub.deliver_nowait(users, payload)
    return old, new, peer


async def test_the_session_continues_at_the_new_home_exactly_once(
    pair: tuple[SessionManager[str], SessionManager[str], _Peer],
) -> None:
    old, new, peer = pair
    login = await old.login("alice", "pw", "cli")
    attachment = await old.attach(login.claims, "", "cli")
    for n in range(1, 6):
        old.hub.deliver_nowait(["u-alice"], f"e{n}")
    attachment.ack(2)
    peer.during = [("u-alice", "d1")]
    moved = await SessionMover(old, peer).move_out(["u-alice"], "uc-2", "uc-2:1")
    assert moved == 1
    old.hub.deliver_nowait(["u-alice"], "a1")  # a server that still routes to the old home
    session = old.hub.get(login.claims.session_id)
    assert session is None
    live = new.hub.get(login.claims.session_id)
    assert live is not None and live.client_name == "cli"
    assert [(e.sequence, e.payload) for e in live.log.after(2)] == [
        (3, "e3"), (4, "e4"), (5, "e5"), (6, "d1"), (7, "a1"),
    ]  # fmt: skip
    assert attachment.session.moved_to is not None
    assert attachment.session.log.closed
    # the client resumes at the new home with the token of the last event it processed
    token = attachment.session.moved_to.token
    claims = new.verify(token)
    assert claims.home_server_id == "uc-2"
    resumed = await new.attach(claims, old.resume_token(claims.session_id, 4), "")
    assert resumed.resumed and resumed.start_sequence == 4
    # the old home sends a stale client on, and never opens the session again
    with pytest.raises(FailedPrecondition) as wrong:
        await old.check_home(login.claims)
    assert wrong.value.reason == "WRONG_HOME_SERVER"
    assert wrong.value.metadata["home_server_id"] == "uc-2"
    assert await old.touch(login.claims) is None
    # a client that missed the Redirect comes with its old token: its session lives here
    late = await new.attach(login.claims, old.resume_token(claims.session_id, 7), "")
    assert late.resumed and late.start_sequence == 7
    token, renewed = new.refresh(login.claims)
    assert renewed.home_server_id == "uc-2" and renewed.session_id == claims.session_id
    assert old.licenses.held == set()  # type: ignore[attr-defined]
    assert new.licenses.held == {claims.session_id}  # type: ignore[attr-defined]


async def test_a_refused_hand_over_keeps_the_session_and_what_arrived(
    pair: tuple[SessionManager[str], SessionManager[str], _Peer],
) -> None:
    old, new, peer = pair
    login = await old.login("alice", "pw", "cli")
    await old.attach(login.claims, "", "cli")
    old.hub.deliver_nowait(["u-alice"], "e1")
    peer.during = [("u-alice", "d1")]
    peer.refuse = True
    with pytest.raises(Unavailable):
        await SessionMover(old, peer).move_out(["u-alice"], "uc-2", "uc-2:1")
    session = old.hub.get(login.claims.session_id)
    assert session is not None and session.moved_to is None
    assert [e.payload for e in session.log.after(0)] == ["e1", "d1"]
    old.hub.deliver_nowait(["u-alice"], "e2")
    assert [e.payload for e in session.log.after(0)] == ["e1", "d1", "e2"]
    assert new.hub.get(login.claims.session_id) is None


async def test_forwarding_ends_after_its_window(
    pair: tuple[SessionManager[str], SessionManager[str], _Peer],
) -> None:
    old, _, peer = pair
    await old.login("alice", "pw", "cli")
    await SessionMover(old, peer, forward_seconds=10).move_out(["u-alice"], "uc-2", "uc-2:1")
    assert old.hub.hosts("u-alice")
    old.clock.now += 11  # type: ignore[attr-defined]
    await old.expire_lapsed(60)
    assert not old.hub.hosts("u-alice")
    assert old.moved == {}


async def test_a_user_moved_away_already_is_not_moved_again_from_here(
    pair: tuple[SessionManager[str], SessionManager[str], _Peer],
) -> None:
    old, new, peer = pair
    login = await old.login("alice", "pw", "cli")
    mover = SessionMover(old, peer)
    assert await mover.move_out(["u-alice"], "uc-2", "uc-2:1") == 1
    # a second move naming this server as the home (the Directory not updated yet)
    assert await mover.move_out(["u-alice"], "uc-3", "uc-3:1") == 0
    old.hub.deliver_nowait(["u-alice"], "late")
    live = new.hub.get(login.claims.session_id)
    assert live is not None and [e.payload for e in live.log.after(0)] == ["late"]


async def test_a_second_move_during_a_hand_over_is_refused(
    pair: tuple[SessionManager[str], SessionManager[str], _Peer],
) -> None:
    old, _, _ = pair
    await old.login("alice", "pw", "cli")
    old.hub.begin_move("u-alice")
    with pytest.raises(FailedPrecondition):
        await SessionMover(old, _Peer()).move_out(["u-alice"], "uc-2", "uc-2:1")


async def test_a_payload_announced_again_after_the_move_is_not_doubled() -> None:
    clock = StepClock()
    signer = TokenSigner.ephemeral(3600, clock=clock)
    old, new = _manager("uc-1", signer, clock), _manager("uc-2", signer, clock)
    for manager in (old, new):  # payloads starting with "once:" reach a session at most once
        manager.hub = SessionHub[str](
            clock, once_key=lambda p: p if p.startswith("once:") else None
        )
    peer = _Peer()
    peer.target, peer.old_hub = SessionMover(new, peer), old.hub
    login = await old.login("alice", "pw", "cli")
    old.hub.deliver_nowait(["u-alice"], "once:m1")
    await SessionMover(old, peer).move_out(["u-alice"], "uc-2", "uc-2:1")
    new.hub.deliver_nowait(["u-alice"], "once:m1")  # the sender's server retried
    new.hub.deliver_nowait(["u-alice"], "once:m2")
    live = new.hub.get(login.claims.session_id)
    assert live is not None
    assert [e.payload for e in live.log.after(0)] == ["once:m1", "once:m2"]
