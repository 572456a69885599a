"""Session tokens: accepted by any server sharing the secret, refused when forged or expired."""

from __future__ import annotations

import pytest

from procall.errors import Unauthenticated
from procall.session.tokens import TokenSigner

SECRET = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _issue(signer: TokenSigner) -> str:
    token, _ = signer.issue(
        session_id="s1", user_id="u1", username="alice", home_server_id="uc-1", admin=False
    )
    return token


def test_token_from_one_server_is_accepted_by_another() -> None:
    clock = Clock()
    token = _issue(TokenSigner(SECRET, 60, clock))
    claims = TokenSigner(SECRET, 60, clock).verify(token)
    assert (claims.user_id, claims.username, claims.home_server_id) == ("u1", "alice", "uc-1")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "x" + t,
        lambda t: t.split(".")[0],
        lambda t: "",
        lambda t: "not-a-token",
    ],
)
def test_forged_or_garbled_token_is_refused(tamper: object) -> None:
    clock = Clock()
    token = _issue(TokenSigner(SECRET, 60, clock))
    with pytest.raises(Unauthenticated) as err:
        TokenSigner(SECRET, 60, clock).verify(tamper(token))  # type: ignore[operator]
    assert err.value.reason == "BAD_CREDENTIALS"


def test_token_signed_with_another_secret_is_refused() -> None:
    clock = Clock()
    token = _issue(TokenSigner("another-secret-of-enough-length", 60, clock))
    with pytest.raises(Unauthenticated):
        TokenSigner(SECRET, 60, clock).verify(token)


def test_expired_token_says_so_and_refresh_extends() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, 60, clock)
    token = _issue(signer)
    clock.now += 59
    fresh, claims = signer.refresh(signer.verify(token))
    clock.now += 2
    with pytest.raises(Unauthenticated) as err:
        signer.verify(token)
    assert err.value.reason == "TOKEN_EXPIRED"
    assert signer.verify(fresh).session_id == claims.session_id == "s1"


def test_short_secret_is_rejected() -> None:
    with pytest.raises(ValueError):
        TokenSigner("short", 60)
