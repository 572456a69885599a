"""What administrators see of the running system: sessions, licenses, servers.

Transport-free values; times are seconds since the epoch, as in the session model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from procall.clock import UnixTime
from procall.routing.models import ServerInfo

__all__ = ["LicenseUsage", "LoggedOnSession", "ServerState", "state_of"]


@dataclass(frozen=True)
class LoggedOnSession:
    """One logged-on session, as admins see it."""

    session_id: str
    user_id: str
    username: str
    #: The UCServer holding the session.
    server_id: str
    client_name: str
    #: When the session logged on (seconds since the epoch).
    login_time: UnixTime
    admin: bool


@dataclass(frozen=True)
class LicenseUsage:
    """How many licenses are configured and held, per server."""

    total: int
    by_server: dict[str, int] = field(default_factory=dict)

    @property
    def in_use(self) -> int:
        """Licenses held system-wide."""
        return sum(self.by_server.values())


class ServerState(enum.Enum):
    """How a live server is doing, as the admin views summarise it."""

    SERVING = "SERVING"
    #: Taking no new work (shutting down or being emptied).
    DRAINING = "DRAINING"
    #: Serving, but a backend it needs is unreachable (e.g. writes go to its outbox).
    DEGRADED = "DEGRADED"


def state_of(server: ServerInfo) -> ServerState:
    """A server's state: draining wins over degraded (it is going away either way)."""
    if server.draining:
        return ServerState.DRAINING
    if server.degraded:
        return ServerState.DEGRADED
    return ServerState.SERVING
