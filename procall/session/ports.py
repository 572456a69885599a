"""What the session logic needs from the rest of the system (small Protocols)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from procall.session.tokens import SessionClaims

__all__ = [
    "AuthenticatedUser",
    "Authenticator",
    "Licenses",
    "Rehoming",
    "ServerLocator",
    "SessionObserver",
]


@dataclass(frozen=True)
class AuthenticatedUser:
    """A user the Directory vouched for."""

    user_id: str
    username: str
    home_server_id: str
    admin: bool


class Authenticator(Protocol):
    """Checks credentials (the Directory)."""

    async def authenticate(
        self, username: str, password: str, source: str = ""
    ) -> AuthenticatedUser:
        """The user, or ``Unauthenticated`` / ``ResourceExhausted`` / ``Unavailable``;
        ``source`` is the client's network address (failures are throttled per source)."""
        ...


class ServerLocator(Protocol):
    """Finds where a live server listens (the routing view)."""

    async def address_of(self, server_id: str) -> str | None:
        """``host:port`` of a live server, or None when it is not live."""
        ...


class Licenses(Protocol):
    """The shared license pool."""

    async def take(self, session_id: str) -> bool:
        """Take a license; False when none is left."""
        ...

    async def give_back(self, session_id: str) -> None:
        """Return a license."""
        ...

    async def renew(self, session_ids: Iterable[str]) -> None:
        """Keep this server's licenses alive."""
        ...


class Rehoming(Protocol):
    """Gives users whose home UCServer is dead or draining a live one, by load."""

    async def live_home(self, user_id: str, username: str, home_server_id: str) -> str:
        """``home_server_id`` when it is live and takes sessions, else a live UCServer
        chosen by load, now assigned as the user's home."""
        ...


class SessionObserver(Protocol):
    """Told when sessions of users homed here begin and end (presence, admin views)."""

    async def session_opened(self, claims: SessionClaims, client_name: str) -> None:
        """A session was created on this server."""
        ...

    async def session_closed(self, claims: SessionClaims, last_of_user: bool) -> None:
        """A session ended; ``last_of_user`` when the user has no other session here."""
        ...

    async def session_moved(self, claims: SessionClaims, last_of_user: bool) -> None:
        """A session was handed over to the user's new home, where it goes on (the user
        did not go offline): forget it here without announcing its end."""
        ...
