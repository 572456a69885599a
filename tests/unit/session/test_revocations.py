"""Token verification: cached, but expiry and logout (revocation) always apply."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from procall.errors import Unauthenticated
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.revocations import RevocationList
from procall.session.tokens import TokenSigner
from tests.unit.session.fakes import MemoryRevocationStore
from tests.unit.session.fakes import StepClock as _Clock
from tests.unit.session.fakes import TestAuthenticator as _Auth
from tests.unit.session.fakes import TestLocator as _Locator


class _Licenses:
    async def take(self, session_id: str) -> bool:
        return True

    async def give_back(self, session_id: str) -> None:
        pass

    async def renew(self, session_ids: Iterable[str]) -> None:
        pass


def _manager(clock: _Clock, store: MemoryRevocationStore) -> SessionManager[str]:
    return SessionManager(
        server_id="uc-1",
        run_id="r",
        own_address=lambda: "127.0.0.1:1",
        hub=SessionHub[str](clock),
        signer=TokenSigner(Ed25519PrivateKey.generate(), 3600, clock=clock),
        authenticator=_Auth(),
        locator=_Locator(),
        licenses=_Licenses(),
        clock=clock,
        revocations=store,
    )


async def test_logout_refuses_every_token_of_the_session_and_saves_the_revocation() -> None:
    clock = _Clock()
    store = MemoryRevocationStore(clock)
    manager = _manager(clock, store)
    login = await manager.login("alice", "pw", "test")
    refreshed, _ = manager.signer.refresh(login.claims)
    assert manager.verify(login.token).session_id == login.claims.session_id
    await manager.logout(login.claims)
    for token in (login.token, refreshed):
        with pytest.raises(Unauthenticated):
            manager.verify(token)
    # kept until the last token the session could have had expires
    assert store.saved[login.claims.session_id] >= clock.now + 3600


async def test_a_revocation_the_store_could_not_take_is_saved_later() -> None:
    clock = _Clock()
    store = MemoryRevocationStore(clock)
    manager = _manager(clock, store)
    login = await manager.login("alice", "pw", "test")
    store.down = True
    await manager.logout(login.claims)  # the logout itself succeeds
    with pytest.raises(Unauthenticated):
        manager.verify(login.token)
    store.down = False
    await manager.save_revocations()
    assert login.claims.session_id in store.saved


async def test_a_cached_token_still_expires() -> None:
    clock = _Clock()
    store = MemoryRevocationStore(clock)
    manager = _manager(clock, store)
    login = await manager.login("alice", "pw", "test")
    manager.verify(login.token)
    clock.now += 3601
    with pytest.raises(Unauthenticated) as failure:
        manager.verify(login.token)
    assert failure.value.reason == "TOKEN_EXPIRED"


def test_revocations_are_forgotten_once_their_tokens_expired() -> None:
    revoked = RevocationList()
    revoked.merge({"s1": 50.0, "s2": 200.0})
    assert revoked.is_revoked("s1", 10.0) and revoked.is_revoked("s2", 10.0)
    revoked.prune(100.0)
    assert not revoked.is_revoked("s1", 10.0)
    assert revoked.is_revoked("s2", 100.0)
    assert len(revoked) == 1
