"""What servicers ask the SessionManager instead of reaching into its hub and signer."""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.ports import AuthenticatedUser
from procall.session.tokens import TokenSigner


class _Directory:
    async def authenticate(
        self, username: str, password: str, source: str = ""
    ) -> AuthenticatedUser:
        return AuthenticatedUser(f"id-{username}", username, "uc-1", False)


class _Locator:
    async def address_of(self, server_id: str) -> str | None:
        return "127.0.0.1:1"


class _Licenses:
    async def take(self, session_id: str) -> bool:
        return True

    async def give_back(self, session_id: str) -> None:
        return None

    async def renew(self, session_ids: Iterable[str]) -> None:
        return None


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _manager(clock: _Clock) -> SessionManager[str]:
    return SessionManager(
        server_id="uc-1",
        run_id="run",
        own_address=lambda: "127.0.0.1:1",
        hub=SessionHub[str](clock),
        signer=TokenSigner(Ed25519PrivateKey.generate(), 60.0, clock=clock),
        authenticator=_Directory(),
        locator=_Locator(),
        licenses=_Licenses(),
        clock=clock,
    )


async def test_refresh_renews_the_token_and_the_live_sessions_claims() -> None:
    clock = _Clock()
    manager = _manager(clock)
    login = await manager.login("alice", "pw", "desk")
    assert manager.is_live(login.claims.session_id)
    assert not manager.is_live("someone-else")
    clock.now += 30
    token, renewed = manager.refresh(login.claims)
    assert renewed.expires_at == clock.now + 60
    assert manager.verify(token) == renewed
    attachment = await manager.attach(renewed, "", "desk")
    assert attachment.session.claims == renewed  # the live session carries the new claims


async def test_a_stream_knows_when_it_was_superseded_and_the_session_ended() -> None:
    manager = _manager(_Clock())
    login = await manager.login("alice", "pw", "desk")
    first = await manager.attach(login.claims, "", "desk")
    assert not first.superseded and manager.holds(first.session)
    second = await manager.attach(login.claims, "", "desk")
    assert first.superseded and not second.superseded
    await manager.logout(login.claims)
    assert not manager.holds(second.session)
    assert not manager.is_live(login.claims.session_id)
