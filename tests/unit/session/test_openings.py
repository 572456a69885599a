"""Session openings: a bound on how many a UCServer works on at once (the first clients of
a restarted server are back first, those past the queue are told when to come back), and
a resume that cannot be had turned into a fresh stream when the client asks for it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from procall.errors import FailedPrecondition, ResourceExhausted
from procall.session.hub import SessionHub
from procall.session.manager import SessionManager
from procall.session.openings import OpeningGate
from procall.session.resume import encode_resume_token
from procall.session.tokens import SessionClaims, TokenSigner
from tests.unit.session.fakes import TestAuthenticator, TestLocator


class _SlowLicenses:
    """Licenses whose ``take`` waits until ``go`` is set (an opening in progress)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.go.set()

    async def take(self, session_id: str) -> bool:
        await self.go.wait()
        return True

    async def give_back(self, session_id: str) -> None:
        return None

    async def renew(self, session_ids: Iterable[str]) -> None:
        return None


def _manager(licenses: _SlowLicenses, gate: OpeningGate) -> SessionManager[str]:
    clock = lambda: 1_000.0  # noqa: E731
    return SessionManager(
        server_id="uc-1",
        run_id="run-2",
        own_address=lambda: "127.0.0.1:1",
        hub=SessionHub[str](clock),
        signer=TokenSigner(Ed25519PrivateKey.generate(), 600.0, clock=clock),
        authenticator=TestAuthenticator(),
        locator=TestLocator(),
        licenses=licenses,
        clock=clock,
        openings=gate,
    )


def _claims(manager: SessionManager[str], name: str) -> SessionClaims:
    _, claims = manager.signer.issue(
        session_id=f"s-{name}",
        user_id=f"u-{name}",
        username=name,
        home_server_id="uc-1",
        admin=False,
    )
    return claims


async def test_openings_past_the_bound_wait_in_order_and_past_the_queue_are_refused() -> None:
    gate = OpeningGate(1, 2, retry_after=1.0, rng=lambda: 0.25)
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def opening(name: str) -> None:
        async with gate.admit():
            order.append(name)
            first_in.set()
            await release.wait()

    first = asyncio.create_task(opening("a"))
    await first_in.wait()
    waiting = [asyncio.create_task(opening(name)) for name in ("b", "c")]
    await asyncio.sleep(0)
    assert gate.waiting == 2
    with pytest.raises(ResourceExhausted) as refused:
        async with gate.admit():
            pass
    assert refused.value.reason == "OVERLOADED"
    assert refused.value.retry_after == 0.8  # 1.0 s spread from half to 1.5 times
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == ["a", "b", "c"]
    assert (gate.active, gate.waiting) == (0, 0)


async def test_a_server_at_its_bound_refuses_a_new_stream_with_retry_info() -> None:
    licenses = _SlowLicenses()
    manager = _manager(licenses, OpeningGate(1, 0))
    licenses.go.clear()  # the first opening is still taking its license
    slow = asyncio.create_task(manager.attach(_claims(manager, "alice"), "", ""))
    await asyncio.sleep(0.01)
    with pytest.raises(ResourceExhausted) as refused:
        await manager.attach(_claims(manager, "bob"), "", "")
    assert refused.value.reason == "OVERLOADED" and refused.value.retry_after
    licenses.go.set()
    assert not (await slow).resumed
    # the slot is free again: bob gets in
    assert (await manager.attach(_claims(manager, "bob"), "", "")).session.claims.username == (
        "bob"
    )


async def test_a_lost_resume_opens_a_fresh_stream_when_the_client_asks() -> None:
    manager = _manager(_SlowLicenses(), OpeningGate(0, 0))
    claims = _claims(manager, "alice")
    before_restart = encode_resume_token(claims.session_id, "run-1", 42)
    with pytest.raises(FailedPrecondition) as expired:
        await manager.attach(claims, before_restart, "")
    assert expired.value.reason == "RESUME_EXPIRED"

    attachment = await manager.attach(claims, before_restart, "", reopen_if_resume_lost=True)
    assert not attachment.resumed
    assert "the server restarted" in attachment.resume_lost
    assert attachment.session.claims.session_id == claims.session_id
    manager.detach(attachment)

    # a resume that can be had is one, and says nothing was lost
    token = manager.resume_token(claims.session_id, 0)
    again = await manager.attach(claims, token, "", reopen_if_resume_lost=True)
    assert again.resumed and again.resume_lost == ""
