"""The admin views use case: who is logged on, the license pool, the live servers.

Administrators page through the logged-on sessions of the whole system with AIP-158
page tokens (``procall.paging``): a token holds the position after the last session
shown, ordered by (login time, session id), and is only valid for the same filter;
sessions that log on or off between two pages do not shift the others.
"""

from __future__ import annotations

from procall.admin_views.model import LicenseUsage, LoggedOnSession
from procall.admin_views.ports import LicenseCounter, LiveServers, LoggedOnSessions
from procall.errors import InvalidArgument
from procall.paging import (
    decode_page_token,
    encode_page_token,
    page_size,
    time_from_cursor,
    time_in_cursor,
)
from procall.routing.models import ServerInfo, ServerRole

__all__ = ["DEFAULT_SESSIONS_PAGE", "AdminViews", "SessionFilter"]

#: Sessions per page when the request names no page size.
DEFAULT_SESSIONS_PAGE = 100
_SESSIONS = "admin.sessions"


class SessionFilter:
    """Which sessions a listing shows: those of one server (all when empty), only admins'."""

    def __init__(self, server_id: str = "", admins_only: bool = False) -> None:
        self.server_id = server_id
        self.admins_only = admins_only

    def matches(self, session: LoggedOnSession) -> bool:
        """Whether ``session`` passes the filter."""
        if self.server_id and session.server_id != self.server_id:
            return False
        return session.admin or not self.admins_only

    def scope(self) -> dict[str, str]:
        """The filter as a page token's scope (a token only continues the same listing)."""
        return {"server_id": self.server_id, "admins_only": str(self.admins_only)}


def _order(session: LoggedOnSession) -> tuple[float, str]:
    return (session.login_time, session.session_id)


class AdminViews:
    """Read-only views of the running system for administrators.

    Who may call it is the caller's concern (an admin session); this use case answers.
    """

    def __init__(
        self, sessions: LoggedOnSessions, licenses: LicenseCounter, servers: LiveServers
    ) -> None:
        self._sessions = sessions
        self._licenses = licenses
        self._servers = servers

    async def list_sessions(
        self, wanted: SessionFilter, size: int, token: str
    ) -> tuple[list[LoggedOnSession], str]:
        """One page of the logged-on sessions (oldest login first) and the next page's
        token (empty on the last page)."""
        limit = page_size(size, default=DEFAULT_SESSIONS_PAGE)
        scope = wanted.scope()
        cursor = decode_page_token(token, _SESSIONS, scope)
        after: tuple[float, str] | None = None
        if cursor is not None:
            if len(cursor) != 2 or not isinstance(cursor[1], str):
                raise InvalidArgument.field("page_token", "is not a valid page token")
            after = (time_from_cursor(cursor[0]), cursor[1])
        found = sorted(
            (
                s
                for s in await self._sessions.list_all()
                if wanted.matches(s) and (after is None or _order(s) > after)
            ),
            key=_order,
        )
        page = found[:limit]
        if len(found) <= limit:
            return page, ""
        last = page[-1]
        return page, encode_page_token(
            _SESSIONS, scope, (time_in_cursor(last.login_time), last.session_id)
        )

    async def license_pool(self) -> LicenseUsage:
        """The license pool: its size and how many each server holds."""
        return await self._licenses.usage()

    async def servers(self, role: ServerRole | None = None) -> list[ServerInfo]:
        """The live servers, of one role or all (``None``)."""
        return [s for s in await self._servers.servers() if role is None or s.role == role]
