"""Signed, expiring session tokens.

A token is ``base64url(json claims) "." base64url(HMAC-SHA256(secret, claims))``.
Every UCServer of a system shares the secret (``[auth] token_secret``), so a
token issued by any server is accepted by the home server. Tokens carry no
secret data; they are only unforgeable and expiring.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass

from procall.clock import Clock, UnixTime
from procall.errors import Unauthenticated

__all__ = ["SessionClaims", "TokenSigner"]


@dataclass(frozen=True)
class SessionClaims:
    """What a session token asserts."""

    session_id: str
    user_id: str
    username: str
    home_server_id: str
    admin: bool
    #: Unix time the token was issued and when it expires.
    issued_at: UnixTime
    expires_at: UnixTime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies session tokens with a shared HMAC key."""

    def __init__(self, secret: str, ttl_seconds: float, clock: Clock = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must have at least 16 characters")
        self._key = secret.encode("utf-8")
        self._ttl = ttl_seconds
        self._clock = clock

    @property
    def ttl(self) -> float:
        """Seconds a token is valid after it was issued or refreshed."""
        return self._ttl

    def issue(
        self, *, session_id: str, user_id: str, username: str, home_server_id: str, admin: bool
    ) -> tuple[str, SessionClaims]:
        """A new token and its claims, valid for the configured lifetime."""
        now = self._clock()
        claims = SessionClaims(
            session_id, user_id, username, home_server_id, admin, now, now + self._ttl
        )
        return self.encode(claims), claims

    def refresh(self, claims: SessionClaims) -> tuple[str, SessionClaims]:
        """A token for the same session with a fresh lifetime."""
        now = self._clock()
        renewed = SessionClaims(
            claims.session_id,
            claims.user_id,
            claims.username,
            claims.home_server_id,
            claims.admin,
            now,
            now + self._ttl,
        )
        return self.encode(renewed), renewed

    def encode(self, claims: SessionClaims) -> str:
        """Serialise and sign claims."""
        body = _b64(json.dumps(asdict(claims), separators=(",", ":")).encode("utf-8"))
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str) -> SessionClaims:
        """The claims of a valid token; ``Unauthenticated`` for a forged or expired one."""
        body, _, signature = token.partition(".")
        if not body or not signature or not hmac.compare_digest(signature, self._sign(body)):
            raise Unauthenticated("the session token is not valid; log in again")
        try:
            data = json.loads(_unb64(body))
            claims = SessionClaims(**data)
        except (ValueError, TypeError, binascii.Error):
            raise Unauthenticated("the session token is not valid; log in again") from None
        if claims.expires_at <= self._clock():
            raise Unauthenticated(
                "the session token has expired; log in again", reason="TOKEN_EXPIRED"
            )
        return claims

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())
