"""Who is calling: the verified identity of the current RPC, for servicers.

The one policy enforcer of the server runtime authenticates each call before its
handler runs and binds what it verified here, in context variables that live as
long as the handler's task. Servicers read the caller from these functions; they
never read ``authorization`` metadata or the TLS peer themselves.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

from procall.errors import Unauthenticated
from procall.session.tokens import SessionClaims

__all__ = [
    "CallerIdentity",
    "ServiceIdentity",
    "bind_caller",
    "current_claims",
    "current_claims_or_none",
    "current_service",
    "reset_caller",
]


@dataclass(frozen=True)
class ServiceIdentity:
    """A procall server proven by its certificate (or, in plain mode, its proof header)."""

    #: ``ucserver``, ``lookup``, ``directory``, ``media``, ...
    role: str
    #: The server id the certificate was issued for.
    server_id: str


@dataclass(frozen=True)
class CallerIdentity:
    """Everything the enforcer verified about one call."""

    claims: SessionClaims | None = None
    service: ServiceIdentity | None = None
    #: The caller's network address as grpc reports it (``ipv4:127.0.0.1:5000``).
    peer: str = ""


_ANONYMOUS = CallerIdentity()
_CALLER: ContextVar[CallerIdentity | None] = ContextVar("procall_caller", default=None)


def _caller() -> CallerIdentity:
    return _CALLER.get() or _ANONYMOUS


def bind_caller(caller: CallerIdentity) -> Token[CallerIdentity | None]:
    """Bind the verified caller for the rest of the handler (used by the enforcer only)."""
    return _CALLER.set(caller)


def reset_caller(token: Token[CallerIdentity | None]) -> None:
    """Undo ``bind_caller`` (used by the enforcer only)."""
    _CALLER.reset(token)


def current_claims() -> SessionClaims:
    """The verified session claims of the current call; ``Unauthenticated`` without them."""
    claims = _caller().claims
    if claims is None:
        raise Unauthenticated("no session token: send `authorization: Bearer <token>`")
    return claims


def current_claims_or_none() -> SessionClaims | None:
    """The verified session claims of the current call, if it carried a session token."""
    return _caller().claims


def current_service() -> ServiceIdentity | None:
    """The proven server identity of the current call, if a procall server is calling."""
    return _caller().service
