"""What the admin views need from the rest of the system (small Protocols)."""

from __future__ import annotations

from typing import Protocol

from procall.admin_views.model import LicenseUsage, LoggedOnSession
from procall.routing.models import ServerInfo

__all__ = ["LicenseCounter", "LiveServers", "LoggedOnSessions"]


class LoggedOnSessions(Protocol):
    """Every UCServer's logged-on sessions (the shared store); ``Unavailable`` when it
    cannot be read."""

    async def list_all(self) -> list[LoggedOnSession]:
        """All logged-on sessions of the system, in any order."""
        ...


class LicenseCounter(Protocol):
    """The shared license pool."""

    async def usage(self) -> LicenseUsage:
        """The pool's size and who holds how many; ``Unavailable`` when it cannot be read."""
        ...


class LiveServers(Protocol):
    """The routing view of live servers (the Lookup)."""

    async def servers(self) -> list[ServerInfo]:
        """Every live server of every role (none when no Lookup is configured)."""
        ...
