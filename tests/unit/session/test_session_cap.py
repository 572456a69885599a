"""The per-user session cap: concurrent logins cannot pass it; abandoned sessions make room."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from procall.errors import ResourceExhausted, Unauthenticated
from procall.session.hub import SessionHub
from procall.session.manager import CONNECT_GRACE, SessionManager
from procall.session.tokens import TokenSigner
from tests.unit.session.fakes import StepClock as _Clock
from tests.unit.session.fakes import TestAuthenticator as _Auth
from tests.unit.session.fakes import TestLocator as _Locator


class _SlowLicenses:
    """A pool that answers after a task switch, as Redis does, and counts what is held."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    async def take(self, session_id: str) -> bool:
        await asyncio.sleep(0)
        self.held.add(session_id)
        return True

    async def give_back(self, session_id: str) -> None:
        self.held.discard(session_id)

    async def renew(self, session_ids: Iterable[str]) -> None:
        pass


def _manager(clock: _Clock, licenses: _SlowLicenses, cap: int) -> SessionManager[str]:
    return SessionManager(
        server_id="uc-1",
        run_id="r",
        own_address=lambda: "127.0.0.1:1",
        hub=SessionHub[str](clock),
        signer=TokenSigner.ephemeral(3600, clock=clock),
        authenticator=_Auth(),
        locator=_Locator(),
        licenses=licenses,
        clock=clock,
        sessions_per_user=cap,
    )


async def test_concurrent_logins_cannot_pass_the_cap() -> None:
    licenses = _SlowLicenses()
    manager = _manager(_Clock(), licenses, cap=3)
    results = await asyncio.gather(
        *(manager.login("alice", "pw", "c") for _ in range(10)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(refused) == 7 and all(r.reason == "LIMIT_EXCEEDED" for r in refused)
    assert len(manager.hub.sessions_of("u-alice")) == 3 == len(licenses.held)
    await manager.login("bob", "pw", "c")  # others are served


async def test_a_session_whose_client_never_connected_makes_room_after_the_grace() -> None:
    clock, licenses = _Clock(), _SlowLicenses()
    manager = _manager(clock, licenses, cap=2)
    first = await manager.login("alice", "pw", "c")
    clock.now += 1
    await manager.login("alice", "pw", "c")
    with pytest.raises(ResourceExhausted):
        await manager.login("alice", "pw", "c")
    clock.now += CONNECT_GRACE
    await manager.login("alice", "pw", "c")  # the oldest, never connected, is ended
    assert len(manager.hub.sessions_of("u-alice")) == 2 == len(licenses.held)
    with pytest.raises(Unauthenticated):
        manager.verify(first.token)  # and its token no longer works


async def test_sessions_with_an_open_stream_are_never_ended_for_a_new_login() -> None:
    clock, licenses = _Clock(), _SlowLicenses()
    manager = _manager(clock, licenses, cap=1)
    login = await manager.login("alice", "pw", "c")
    await manager.attach(login.claims, "", "c")
    clock.now += 10 * CONNECT_GRACE
    with pytest.raises(ResourceExhausted):
        await manager.login("alice", "pw", "c")
    manager.verify(login.token)
