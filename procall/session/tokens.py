"""Signed, expiring session tokens that verifiers cannot mint: EdDSA (Ed25519) JWTs.

The issuing UCServers sign with the private key (``[auth] signing_key_file``);
every other server verifies with public keys only (``[auth] verify_key_file``: one
or more PEM public keys, so that a new key can be rolled out beside the old one).
The algorithm is pinned to EdDSA, so ``alg=none`` and HS256 "signed" with the
public key are refused, and so is a token of another issuer or audience, one
without ``exp``/``iat``/``nbf``/``sub``/``jti``, and one whose ``kid`` names no
known key. Claims: ``iss``, ``aud``, ``sub`` (user id), ``jti`` (session id),
``iat``, ``nbf``, ``exp``, plus ``name`` (username), ``home`` (home server id)
and ``adm`` (administrator). Tokens carry no secret data.

Checking a signature costs ~150 us; ``TokenVerifier`` keeps the claims of every
verified token until it expires, so a busy client's calls cost one dict lookup.
Expiry and not-before are checked against the verifier's clock (with a few
seconds of leeway for not-before).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from procall.clock import Clock, UnixTime
from procall.errors import Unauthenticated

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "SessionClaims",
    "TokenSigner",
    "TokenVerifier",
    "key_id",
]

DEFAULT_ISSUER = "procall"
DEFAULT_AUDIENCE = "procall"
_ALGORITHM = "EdDSA"
_REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
#: Seconds of clock difference between servers tolerated for ``nbf`` (a token issued by a
#: server whose clock runs a little ahead); ``exp`` is strict.
_LEEWAY = 5.0
#: Verified tokens remembered (each entry is one token string and its claims).
_CACHE_SIZE = 50_000


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


def key_id(key: Ed25519PublicKey) -> str:
    """The ``kid`` of a public key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _invalid(why: str = "") -> Unauthenticated:
    suffix = f" ({why})" if why else ""
    return Unauthenticated(f"the session token is not valid{suffix}; log in again")


def _expired() -> Unauthenticated:
    return Unauthenticated("the session token has expired; log in again", reason="TOKEN_EXPIRED")


class TokenVerifier:
    """Verifies session tokens with public keys only (see module doc)."""

    def __init__(
        self,
        keys: Iterable[Ed25519PublicKey],
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        clock: Clock = time.time,
        cache_size: int = _CACHE_SIZE,
    ) -> None:
        self._keys = {key_id(key): key for key in keys}
        if not self._keys:
            raise ValueError("a token verifier needs at least one public key")
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._cache_size = cache_size
        self._verified: dict[str, SessionClaims] = {}

    @property
    def key_ids(self) -> list[str]:
        """The ``kid`` of every key this verifier accepts."""
        return list(self._keys)

    def verify(self, token: str) -> SessionClaims:
        """The claims of a valid token; ``Unauthenticated`` for any other
        (reason ``TOKEN_EXPIRED`` for an expired one)."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        if claims.expires_at <= self._clock():
            self._verified.pop(token, None)
            raise _expired()
        return claims

    def _decode(self, token: str) -> SessionClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid() from None
        if header.get("alg") != _ALGORITHM:
            raise _invalid("wrong algorithm")
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise _invalid("signed by an unknown key")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                # expiry and not-before are checked below, against this verifier's clock
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError:
            raise _invalid() from None
        try:
            claims = SessionClaims(
                session_id=_text(payload["jti"]),
                user_id=_text(payload["sub"]),
                username=_text(payload.get("name", "")),
                home_server_id=_text(payload.get("home", "")),
                admin=payload.get("adm") is True,
                issued_at=_number(payload["iat"]),
                expires_at=_number(payload["exp"]),
            )
            not_before = _number(payload["nbf"])
        except (TypeError, ValueError):
            raise _invalid("malformed claims") from None
        now = self._clock()
        if not_before - _LEEWAY > now:
            raise _invalid("not valid yet")
        if claims.expires_at <= now:
            raise _expired()
        return claims


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


class TokenSigner:
    """Issues session tokens with the private key; verifies them like a ``TokenVerifier``
    (its own public key plus ``verify_keys``, the other keys of a rollover)."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        ttl_seconds: float,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        clock: Clock = time.time,
        verify_keys: Iterable[Ed25519PublicKey] = (),
    ) -> None:
        self._private = private_key
        public = private_key.public_key()
        self._kid = key_id(public)
        self._ttl = ttl_seconds
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self.verifier = TokenVerifier(
            [public, *verify_keys], issuer=issuer, audience=audience, clock=clock
        )

    @classmethod
    def ephemeral(cls, ttl_seconds: float, **kwargs: Any) -> TokenSigner:
        """A signer with a key pair made for this process only (no other server can verify)."""
        return cls(Ed25519PrivateKey.generate(), ttl_seconds, **kwargs)

    @property
    def ttl(self) -> float:
        """Seconds a token is valid after it was issued or refreshed."""
        return self._ttl

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public key that verifies this signer's tokens."""
        return self._private.public_key()

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
        return self.issue(
            session_id=claims.session_id,
            user_id=claims.user_id,
            username=claims.username,
            home_server_id=claims.home_server_id,
            admin=claims.admin,
        )

    def encode(self, claims: SessionClaims) -> str:
        """Sign claims."""
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": claims.user_id,
            "jti": claims.session_id,
            "iat": claims.issued_at,
            "nbf": claims.issued_at,
            "exp": claims.expires_at,
            "name": claims.username,
            "home": claims.home_server_id,
            "adm": claims.admin,
        }
        return jwt.encode(payload, self._private, algorithm=_ALGORITHM, headers={"kid": self._kid})

    def verify(self, token: str) -> SessionClaims:
        """The claims of a valid token; ``Unauthenticated`` for any other."""
        return self.verifier.verify(token)
